"""Fault knobs added for the reliability suites: `error_429` (a rate-limit storm) and `stuck`."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pipeline.emulator import Emulator, EmulatorConfig, Faults, render
from pipeline.emulator.faults import KNOBS
from tests.emulator.support import FLUX, FakeClock, MakeEmulator, client_for, finish, generate

BODY = {"prompt": "iron sword", "width": 512, "height": 512}


def test_the_new_knobs_parse_and_round_trip() -> None:
    """Both knobs are known to the spec parser, per group, and survive `spec()`."""
    faults = Faults.parse("error_429=0.3,generate:stuck=1,retry_after=garbage")
    assert {"error_429", "stuck"} <= set(KNOBS)
    assert faults.rate("jobs", "error_429") == 0.3
    assert faults.rate("generate", "stuck") == 1
    assert faults.rate("jobs", "stuck") == 0
    assert Faults.parse(faults.spec()) == faults


async def test_error_429_answers_before_any_work_without_retry_after(
    make_emulator: MakeEmulator,
) -> None:
    """A 429 storm: no job is made, no Retry-After unless configured, no parallel-cap details."""
    emu = make_emulator(faults="generate:error_429=1")
    async with client_for(emu) as client:
        response = await client.post(FLUX, json=BODY)
        assert (await client.get("/jobs")).status_code == 200  # other groups unaffected
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    assert "emulated" in response.json()["reason"]
    assert "details" not in response.json()  # not the parallel cap
    assert emu.store.jobs == {}
    assert emu.stats.faults["error_429"] == 1
    assert emu.stats.rate_limited == 1


@pytest.mark.parametrize(
    ("value", "header"),
    [(2, "2"), (1e9, "1000000000"), (-5, "-5"), ("soon", "soon"), (0.25, "0.25")],
)
async def test_error_429_carries_the_configured_retry_after(
    make_emulator: MakeEmulator, value: float | str, header: str
) -> None:
    """Any Retry-After, absurd ones included, is sent verbatim on the injected 429s."""
    emu = make_emulator(faults=Faults({"*": {"error_429": 1}}, retry_after=value))
    async with client_for(emu) as client:
        response = await client.get("/jobs")
    assert response.status_code == 429
    assert response.headers["retry-after"] == header


async def test_error_500_still_sends_no_retry_after(make_emulator: MakeEmulator) -> None:
    """Adding 429 kept the old rule: a 500 never carries Retry-After."""
    emu = make_emulator(faults=Faults({"*": {"error_500": 1}}, retry_after=3))
    async with client_for(emu) as client:
        response = await client.get("/jobs")
    assert response.status_code == 500
    assert "retry-after" not in response.headers


async def test_a_stuck_job_stays_in_progress_forever(
    make_emulator: MakeEmulator, clock: FakeClock
) -> None:
    """The job is paid and listed, reaches in-progress and never ends; no outputs appear."""
    emu = make_emulator(faults="generate:stuck=1")
    async with client_for(emu) as client:
        job = await generate(client)
        clock.advance(1e7)
        seen = await finish(client, clock, job["jobId"])
        listed = (await client.get("/jobs")).json()["jobs"]
    assert seen["status"] == "in-progress"
    assert [entry["status"] for entry in seen["statusHistory"]] == ["queued", "in-progress"]
    assert "assetIds" not in seen["metadata"]
    assert [entry["jobId"] for entry in listed] == [job["jobId"]]
    assert emu.stats.faults["stuck"] == 1
    assert emu.stats.in_flight == 1
    assert emu.stats.duplicate_generates == 0


async def test_a_stuck_job_can_be_canceled(make_emulator: MakeEmulator, clock: FakeClock) -> None:
    """Cancel is the way out of a stuck job: it ends `canceled` and leaves the in-flight count."""
    emu = make_emulator(faults="generate:stuck=1")
    async with client_for(emu) as client:
        job = await generate(client)
        clock.advance(5)
        response = await client.post(f"/jobs/{job['jobId']}/action", json={"action": "cancel"})
        clock.advance(1)
        after = (await client.get(f"/jobs/{job['jobId']}")).json()["job"]
    assert response.status_code == 200
    assert after["status"] == "canceled"
    assert emu.stats.in_flight == 0


async def test_stuck_jobs_fill_the_parallel_cap_with_a_finite_retry_after(
    make_emulator: MakeEmulator, clock: FakeClock
) -> None:
    """With every slot held by a stuck job, the cap still answers 429 with a usable Retry-After."""
    emu = make_emulator(faults="generate:stuck=1", parallel_cap=1)
    async with client_for(emu) as client:
        await generate(client)
        clock.advance(100)
        refused = await client.post(FLUX, json=BODY)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"
    assert refused.json()["details"]["actionName"] == "parallel-custom-jobs"


async def test_job_failure_wins_over_stuck(make_emulator: MakeEmulator, clock: FakeClock) -> None:
    """Both knobs on one request: the job fails (stuck and failed would contradict each other)."""
    emu = make_emulator(faults="generate:stuck=1,generate:job_failure=1")
    async with client_for(emu) as client:
        job = await generate(client)
        seen = await finish(client, clock, job["jobId"])
    assert seen["status"] == "failure"
    assert emu.stats.faults["stuck"] == 0


class TickingClock(FakeClock):
    """A clock that moves a little every time it is read, as a real one does between reads."""

    def __call__(self) -> float:
        self.now += 0.07
        return self.now


@pytest.mark.parametrize("duration", [0.0, 0.5, 1.0])
async def test_a_job_shown_successful_always_lists_its_assets(duration: float) -> None:
    """Regression: the job used to be settled at one clock reading and shown at a later one, so
    a job ending in between was shown `success` with no `assetIds` (found by the fault matrix)."""
    clock = TickingClock()
    emu = Emulator(EmulatorConfig(seed=7, job_duration=duration), clock=clock, sleep=clock.sleep)
    async with client_for(emu) as client:
        job = await generate(client)
        seen = [job]
        while seen[-1]["status"] != "success":
            assert len(seen) < 100
            seen.append((await client.get(f"/jobs/{job['jobId']}")).json()["job"])
    assert all(j["metadata"].get("assetIds") for j in seen if j["status"] == "success")


@pytest.mark.parametrize("prompt", ["\n", "two\nlines", "a\r\nb\u2028c", "tab\tand\x0bvt"])
def test_placeholder_art_takes_prompts_with_line_breaks(prompt: str) -> None:
    """Regression (found by hypothesis in test_render): a prompt with a line break, as a YAML
    block scalar gives, crashed the renderer with pillow's "can't measure multiline text"."""
    data = render.placeholder(prompt=prompt, seed=3, output_index=0, width=64, height=48)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (64, 48)
