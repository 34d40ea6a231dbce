"""Jobs: the lifecycle read from the clock, listing with cursor paging and filters, cancel."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pipeline.emulator import Emulator
from pipeline.emulator.wire import iso
from tests.emulator.support import START, FakeClock, MakeEmulator, client_for, generate


async def job_at(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/jobs/{job_id}")
    assert response.status_code == 200
    job: dict[str, Any] = response.json()["job"]
    return job


async def test_a_job_goes_queued_in_progress_finalizing_success(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    job_id = (await generate(client))["jobId"]  # 2 s: in progress at 0.2 s, finalizing at 1.8 s
    seen = []
    for step in (0.1, 0.9, 1.0, 1.9, 2.0, 5.0):
        clock.now = START + step
        job = await job_at(client, job_id)
        seen.append((job["status"], job["progress"]))
    assert seen == [
        ("queued", 0),
        ("in-progress", 0.394),
        ("in-progress", 0.45),
        ("finalizing", 0.945),
        ("success", 1),
        ("success", 1),
    ]


async def test_status_history_has_one_entry_per_status_with_its_date(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    job_id = (await generate(client))["jobId"]
    clock.advance(10)
    job = await job_at(client, job_id)
    assert job["statusHistory"] == [
        {"status": "queued", "date": iso(START)},
        {"status": "in-progress", "date": iso(START + 0.2)},
        {"status": "finalizing", "date": iso(START + 1.8)},
        {"status": "success", "date": iso(START + 2)},
    ]
    assert job["createdAt"] == "2026-01-01T00:00:00.000Z"
    assert job["updatedAt"] == "2026-01-01T00:00:02.000Z"


async def test_outputs_appear_only_on_success(client: httpx.AsyncClient, clock: FakeClock) -> None:
    job_id = (await generate(client, numOutputs=3))["jobId"]
    clock.advance(1)
    assert "assetIds" not in (await job_at(client, job_id))["metadata"]
    clock.advance(1)
    assert len((await job_at(client, job_id))["metadata"]["assetIds"]) == 3


async def test_zero_length_jobs_are_done_at_once(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(job_duration=0)
    async with client_for(emu) as client:
        job = await generate(client)
    assert job["status"] == "success"
    assert len(job["metadata"]["assetIds"]) == 1


async def test_durations_follow_the_configured_distribution(
    make_emulator: MakeEmulator, clock: FakeClock
) -> None:
    emu = make_emulator(job_duration="uniform:1,3")
    async with client_for(emu) as client:
        for _ in range(20):
            await generate(client)
    durations = [job.duration for job in emu.store.jobs.values()]
    assert all(1 <= d <= 3 for d in durations)
    assert len(set(durations)) == 20


async def test_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/jobs/job_nope")
    assert response.status_code == 404
    assert response.json()["reason"] == "job job_nope not found"


async def test_cancel_stops_a_running_job(client: httpx.AsyncClient, clock: FakeClock) -> None:
    job_id = (await generate(client))["jobId"]
    clock.advance(1)
    response = await client.post(f"/jobs/{job_id}/action", json={"action": "cancel"})
    assert response.status_code == 200
    job = response.json()["job"]
    assert job["status"] == "canceled"
    assert [h["status"] for h in job["statusHistory"]] == ["queued", "in-progress", "canceled"]
    clock.advance(100)
    later = await job_at(client, job_id)
    assert later["status"] == "canceled"
    assert "assetIds" not in later["metadata"]


async def test_cancel_is_refused_once_a_job_ended(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    job_id = (await generate(client))["jobId"]
    clock.advance(5)
    response = await client.post(f"/jobs/{job_id}/action", json={"action": "cancel"})
    assert response.status_code == 400
    assert "already ended (success)" in response.json()["reason"]
    other = await client.post(f"/jobs/{job_id}/action", json={"action": "pause"})
    assert "the only action is cancel" in other.json()["reason"]


async def submit(client: httpx.AsyncClient, clock: FakeClock, count: int) -> list[str]:
    """`count` jobs, one second apart, oldest first."""
    ids = []
    for _ in range(count):
        ids.append((await generate(client))["jobId"])
        clock.advance(1)
    return ids


async def all_pages(client: httpx.AsyncClient, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    token = None
    for _ in range(100):
        query = dict(params, **({"paginationToken": token} if token else {}))
        body = (await client.get("/jobs", params=query)).json()
        pages.append([job["jobId"] for job in body["jobs"]])
        token = body.get("nextPaginationToken")
        if not token:
            return pages
    raise AssertionError("paging never ended")


async def test_lists_jobs_newest_first_with_cursor_paging(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    ids = await submit(client, clock, 5)
    pages = await all_pages(client, pageSize=2)
    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[:1]]


async def test_a_filtered_page_can_be_empty_while_a_token_follows(
    make_emulator: MakeEmulator, clock: FakeClock
) -> None:
    emu = make_emulator(job_duration=10)
    async with client_for(emu) as client:
        ids = await submit(client, clock, 6)  # job k: in progress at k+1, finalizing at k+9
        clock.now = START + 11.5
        pages = await all_pages(client, pageSize=2, status="in-progress")
    # By update time: jobs 1 and 2 (done, finalizing at 11), 0 (done at 10), then 5, 4, 3.
    assert pages == [[], [ids[5]], [ids[4], ids[3]]]


async def test_filters_by_type_and_dates(
    emu: Emulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    ids = await submit(client, clock, 3)
    await client.post("/generate/caption", json={"images": []})  # rejected: creates nothing
    after = iso(START + 0.5)
    pages = await all_pages(client, createdAfter=after)
    assert [j for p in pages for j in p] == [ids[2], ids[1]]
    typed = await all_pages(client, types="custom,caption", updatedAfter=iso(START))
    assert sorted(j for p in typed for j in p) == sorted(ids)
    none = await all_pages(client, type="caption")
    assert none == [[]]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"status": "success", "createdAfter": iso(START)}, "createdAfter cannot be combined"),
        ({"updatedAfter": iso(START)}, "updatedAfter needs status"),
        ({"createdAfter": "yesterday"}, "Invalid createdAfter"),
        ({"pageSize": 0}, "Invalid pageSize 0"),
        ({"pageSize": 101}, "Invalid pageSize 101"),
        ({"paginationToken": "!!"}, "Invalid paginationToken"),
    ],
)
async def test_rejects_bad_list_queries(
    client: httpx.AsyncClient, params: dict[str, Any], reason: str
) -> None:
    response = await client.get("/jobs", params=params)
    assert response.status_code == 400
    assert reason in response.json()["reason"]


async def test_job_failure_fault_ends_in_failure_with_error_and_hint(
    make_emulator: MakeEmulator, clock: FakeClock
) -> None:
    emu = make_emulator(faults="generate:job_failure=1")
    async with client_for(emu) as client:
        job_id = (await generate(client))["jobId"]
        clock.advance(5)
        job = await job_at(client, job_id)
    assert job["status"] == "failure"
    assert [h["status"] for h in job["statusHistory"]] == ["queued", "in-progress", "failure"]
    assert "emulated" in job["metadata"]["error"]
    assert job["metadata"]["hint"]
    assert "assetIds" not in job["metadata"]
    assert emu.stats.faults["job_failure"] == 1
