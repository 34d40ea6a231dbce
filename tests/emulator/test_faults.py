"""Fault injection (each knob, seeded and reproducible), the parallel cap, the rate limit."""

from __future__ import annotations

import httpx
import pytest

from pipeline.emulator import Emulator, Faults
from pipeline.emulator.faults import FaultDice
from tests.emulator.support import (
    FLUX,
    FakeClock,
    MakeEmulator,
    client_for,
    finish,
    generate,
    png,
    upload,
)

BODY = {"prompt": "iron sword", "width": 512, "height": 512}


def test_parses_the_compact_spec() -> None:
    faults = Faults.parse("error_500=0.1, drop=0.05,generate:timeout=0.2,retry_after=30")
    assert faults.rates == {"*": {"error_500": 0.1, "drop": 0.05}, "generate": {"timeout": 0.2}}
    assert faults.retry_after == 30
    assert faults.rate("generate", "timeout") == 0.2
    assert faults.rate("generate", "drop") == 0.05  # inherited from *
    assert faults.rate("jobs", "timeout") == 0
    assert Faults.parse(faults.spec()) == faults
    assert Faults.parse("") == Faults()


def test_a_group_value_beats_the_default_even_when_zero() -> None:
    faults = Faults.parse("drop=1,jobs:drop=0")
    assert faults.rate("jobs", "drop") == 0
    assert faults.rate("assets", "drop") == 1


def test_settings_and_odd_retry_after_values() -> None:
    faults = Faults.parse("slow_delay=0.5,timeout_delay=600,retry_after=soon")
    assert (faults.slow_delay, faults.timeout_delay, faults.retry_after) == (0.5, 600, "soon")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("explode=0.1", "unknown fault 'explode'"),
        ("billing:drop=0.1", "unknown fault group 'billing'"),
        ("drop=lots", "'lots' is not a number"),
        ("drop=1.5", "a probability is 0..1"),
        ("drop", "expected knob=value"),
        ("slow_delay=-1", "seconds, 0 or more"),
    ],
)
def test_rejects_malformed_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faults.parse(spec)


def test_draws_are_reproducible_per_seed() -> None:
    faults = Faults.parse("drop=0.5")

    def draws(seed: int) -> list[bool]:
        dice = FaultDice(faults, seed)
        return ["drop" in dice.roll("generate") for _ in range(40)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    assert 5 < sum(draws(1)) < 35


async def outcomes(emu: Emulator, count: int) -> list[str]:
    results = []
    async with client_for(emu) as client:
        for _ in range(count):
            try:
                response = await client.post(FLUX, json=BODY)
                results.append(str(response.status_code))
            except httpx.TransportError as exc:
                results.append(type(exc).__name__)
    return results


async def test_same_seed_same_failures_end_to_end(make_emulator: MakeEmulator) -> None:
    spec = "error_500=0.2,error_503=0.2,drop=0.2,timeout=0.2"
    first = await outcomes(make_emulator(seed=11, faults=spec), 60)
    again = await outcomes(make_emulator(seed=11, faults=spec), 60)
    assert first == again
    assert {"200", "500", "503", "RemoteProtocolError", "ReadTimeout"} <= set(first)


async def test_error_faults_answer_before_any_work(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(faults="generate:error_500=1")
    async with client_for(emu) as client:
        response = await client.post(FLUX, json=BODY)
        assert response.status_code == 500
        assert "emulated" in response.json()["reason"]
        assert "x-should-retry" not in response.headers
        assert (await client.get("/jobs")).status_code == 200  # other groups unaffected
    assert emu.store.jobs == {}
    assert emu.stats.faults["error_500"] == 1


@pytest.mark.parametrize(("value", "header"), [(3600, "3600"), (-5, "-5"), (1e12, "1000000000000")])
async def test_503_carries_the_configured_retry_after(
    make_emulator: MakeEmulator, value: float, header: str
) -> None:
    emu = make_emulator(faults=Faults({"*": {"error_503": 1}}, retry_after=value))
    async with client_for(emu) as client:
        response = await client.get("/jobs")
    assert response.status_code == 503
    assert response.headers["retry-after"] == header


async def test_drop_does_the_work_then_breaks_the_connection(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(faults="generate:drop=1")
    async with client_for(emu) as client:
        for _ in range(2):
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(FLUX, json=BODY)
    assert len(emu.store.jobs) == 2  # paid twice: what a blind retry costs
    assert emu.stats.jobs_created == 2
    assert emu.stats.duplicate_generates == 1
    assert emu.stats.faults["drop"] == 2
    assert emu.stats.requests["POST /v1/generate/custom/{modelId}"] == 2
    assert emu.stats.statuses == {}  # the client never got an answer


async def test_timeout_does_the_work_then_never_answers(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(faults="generate:timeout=1")
    async with client_for(emu) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(FLUX, json=BODY)
        listed = (await client.get("/jobs")).json()["jobs"]
    assert len(listed) == 1  # reconcilable: the job exists
    assert emu.stats.faults["timeout"] == 1


async def test_slow_waits_with_the_injected_sleep(
    make_emulator: MakeEmulator, clock: FakeClock
) -> None:
    emu = make_emulator(faults="jobs:slow=1,slow_delay=3")
    async with client_for(emu) as client:
        response = await client.get("/jobs")
    assert response.status_code == 200
    assert clock.sleeps == [3]


async def test_truncate_cuts_downloads_short(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(faults="download:truncate=1")
    data = png(64, 64)
    async with client_for(emu) as client:
        asset_id = await upload(client, data)
        url = (await client.get(f"/assets/{asset_id}")).json()["asset"]["url"]
        response = await client.get(url)
    assert response.status_code == 200
    assert response.content == data[: len(data) // 2]
    assert response.headers["content-length"] == str(len(data) // 2)
    assert emu.stats.faults["truncate"] == 1


async def test_expire_hands_out_urls_that_already_expired(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(faults="assets:expire=1")
    async with client_for(emu) as client:
        asset_id = await upload(client, png())
        url = (await client.get(f"/assets/{asset_id}")).json()["asset"]["url"]
        response = await client.get(url)
    assert response.status_code == 403
    assert "expired" in response.json()["reason"]


async def test_expire_on_downloads_refuses_valid_urls(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(faults="download:expire=1")
    async with client_for(emu) as client:
        asset_id = await upload(client, png())
        url = (await client.get(f"/assets/{asset_id}")).json()["asset"]["url"]
        assert (await client.get(url)).status_code == 403
    assert emu.stats.faults["expire"] == 1


async def test_parallel_cap_answers_429_with_details_and_retry_after(
    make_emulator: MakeEmulator, clock: FakeClock
) -> None:
    emu = make_emulator(parallel_cap=2, job_duration=10)
    async with client_for(emu) as client:
        await generate(client)
        clock.advance(3)
        await generate(client)
        refused = await client.post(FLUX, json=BODY)
        assert refused.status_code == 429
        assert refused.json()["details"] == {"actionName": "parallel-custom-jobs", "limit": 2}
        assert refused.headers["retry-after"] == "7"  # the first job ends in 7 s
        dry = await client.post(FLUX, params={"dryRun": "true"}, json=BODY)
        assert dry.status_code == 269  # estimates are not jobs
        clock.advance(7)
        assert (await client.post(FLUX, json=BODY)).status_code == 200
    assert emu.stats.rate_limited == 1
    assert emu.stats.max_in_flight == 2
    assert emu.stats.jobs_created == 3


async def test_parallel_cap_retry_after_can_be_forced(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(parallel_cap=1, faults="retry_after=86400")
    async with client_for(emu) as client:
        await generate(client)
        refused = await client.post(FLUX, json=BODY)
    assert refused.headers["retry-after"] == "86400"


async def test_rate_limit_answers_429_until_tokens_refill(
    make_emulator: MakeEmulator, clock: FakeClock
) -> None:
    emu = make_emulator(rate_limit=2)
    async with client_for(emu) as client:
        codes = [(await client.get("/jobs")).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = await client.get("/jobs")
        assert limited.headers["retry-after"] == "1"
        clock.advance(0.5)
        assert (await client.get("/jobs")).status_code == 200
    assert emu.stats.rate_limited == 2


async def test_stats_count_requests_statuses_and_jobs_in_flight(
    emu: Emulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    first = await generate(client)
    clock.advance(1)
    await generate(client)  # 2 jobs in flight from t=1 to t=2
    await client.post(FLUX, json={"prompt": 1})
    await finish(client, clock, first["jobId"])
    stats = (await client.get("http://emulator.local/_emulator/stats")).json()
    assert stats["requests"] == {
        "GET /v1/jobs/{jobId}": 1,
        "POST /v1/generate/custom/{modelId}": 3,
    }
    assert stats["statuses"] == {"200": 3, "400": 1}
    assert stats["jobs_created"] == 2
    assert stats["duplicate_generates"] == 1  # the same body twice
    assert stats["max_in_flight"] == 2
    assert stats["in_flight"] == 0
    start = stats["since"]
    assert stats["in_flight_series"] == [
        [start, 1],
        [start + 1, 2],
        [start + 2, 1],
        [start + 3, 0],
    ]
    assert stats["in_flight_seconds"]["2"] == 1


async def test_stats_reset_keeps_jobs_still_in_flight(
    emu: Emulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await generate(client)
    clock.advance(1)
    emu.stats.reset()
    assert emu.stats.requests == {}
    assert emu.stats.jobs_created == 0
    assert emu.stats.in_flight == 1
    clock.advance(5)
    assert emu.stats.in_flight == 0
    assert emu.stats.max_in_flight == 1
    reset = await client.delete("http://emulator.local/_emulator/stats")
    assert reset.json()["requests"] == {}
