"""Persistence in state_dir across emulator instances, and the configuration parsers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipeline.emulator import Duration, EmulatorConfig, parse_duration
from tests.emulator.support import (
    FakeClock,
    MakeEmulator,
    client_for,
    finish,
    generate,
    png,
    upload,
)


async def test_a_restarted_emulator_keeps_jobs_assets_models_and_collections(
    make_emulator: MakeEmulator, clock: FakeClock, tmp_path: Path
) -> None:
    first = make_emulator(state_dir=tmp_path)
    async with client_for(first) as client:
        done = await finish(client, clock, (await generate(client, seed=9))["jobId"])
        output = done["metadata"]["assetIds"][0]
        original = await client.get((await client.get(f"/assets/{output}")).json()["asset"]["url"])
        uploaded = await upload(client, png(20, 10))
        running = (await generate(client, prompt="still running"))["jobId"]
        collection = (await client.post("/collections", json={"name": "icons"})).json()
        cid = collection["collection"]["id"]
        await client.put(f"/collections/{cid}/assets", json={"assetIds": [uploaded]})
        model_id = (await client.post("/models", json={"name": "m"})).json()["model"]["id"]

    second = make_emulator(state_dir=tmp_path)
    async with client_for(second) as client:
        again = (await client.get(f"/jobs/{done['jobId']}")).json()["job"]
        assert again == done
        asset = (await client.get(f"/assets/{output}")).json()["asset"]
        assert (await client.get(asset["url"])).content == original.content
        kept = (await client.get(f"/assets/{uploaded}")).json()["asset"]
        assert kept["collectionIds"] == [cid]
        assert (await client.get(f"/collections/{cid}")).json()["collection"]["assetCount"] == 1
        assert (await client.get(f"/models/{model_id}")).json()["model"]["status"] == "new"
        finished = await finish(client, clock, running)  # a job in flight at the restart ends
        assert finished["status"] == "success"
        new_job = (await generate(client))["jobId"]
    assert new_job not in first.store.jobs  # ids keep counting, no reuse
    assert len(list((tmp_path / "jobs").glob("*.json"))) == 3


async def test_without_state_dir_nothing_is_written(
    make_emulator: MakeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    emu = make_emulator()
    async with client_for(emu) as client:
        await generate(client)
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("2", Duration("fixed", 2)),
        (0.5, Duration("fixed", 0.5)),
        ("fixed:1", Duration("fixed", 1)),
        ("uniform:0.5,2", Duration("uniform", 0.5, 2)),
        ("lognormal:0,0.5", Duration("lognormal", 0, 0.5)),
    ],
)
def test_parses_duration_specs(spec: str | float, expected: Duration) -> None:
    assert parse_duration(spec) == expected
    assert parse_duration(str(expected)) == expected


@pytest.mark.parametrize(
    "spec", ["", "soon", "uniform:2", "uniform:3,1", "fixed:-1", "gamma:1,2", "lognormal:0,-1"]
)
def test_rejects_bad_duration_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="job duration"):
        parse_duration(spec)


@pytest.mark.parametrize(
    "config",
    [
        {"parallel_cap": 0},
        {"rate_limit": 0},
        {"url_ttl": 0},
        {"faults": "drop=2"},
        {"job_duration": "x"},
    ],
)
def test_config_checks_its_values(config: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        EmulatorConfig(**config)  # type: ignore[arg-type]
