"""Over real HTTP (uvicorn on loopback): the official SDK works end to end, and faults hit hard.

These use the real clock with very short jobs; every wait is a bounded loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image
from scenario_sdk import AsyncScenario, BadRequestError, RateLimitError

from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.emulator.server import serve

TERMINAL = ("success", "failure", "canceled")


@contextlib.asynccontextmanager
async def served(emu: Emulator) -> AsyncIterator[str]:
    """Run `emu` on a free loopback port; yields its base URL (…/v1)."""
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(emu, "127.0.0.1", 0, on_ready=ready.set_result))
    try:
        yield await asyncio.wait_for(ready, timeout=10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_official_sdk_runs_a_model_and_downloads_the_outputs() -> None:
    emu = Emulator(EmulatorConfig(seed=3, job_duration=0.2))
    async with (
        served(emu) as base_url,
        AsyncScenario(base_url=base_url, api_key="local", api_secret="local", max_retries=0) as sdk,
        httpx.AsyncClient() as plain,
    ):
        estimate = await sdk.generate.run_model(
            "model_bfl-flux-2-dev", body={"prompt": "x", "numOutputs": 2}, dry_run="true"
        )
        assert estimate.creative_units_cost == 20
        assert estimate.job is None

        run = await sdk.generate.run_model(
            "model_bfl-flux-2-dev",
            body={"prompt": "iron sword icon", "width": 256, "height": 384, "numOutputs": 2},
        )
        assert run.job.status == "queued"
        assert run.cost_details is not None
        job = run.job
        for _ in range(200):
            job = (await sdk.jobs.retrieve(run.job.job_id)).job
            if job.status in TERMINAL:
                break
            await asyncio.sleep(0.02)
        assert job.status == "success"
        assert job.progress == 1
        assert [h.status for h in job.status_history][-1] == "success"
        assert job.metadata.asset_ids is not None
        assert len(job.metadata.asset_ids) == 2

        for asset_id in job.metadata.asset_ids:
            asset = (await sdk.assets.retrieve(asset_id)).asset
            assert asset.mime_type == "image/png"
            response = await plain.get(asset.url)  # pre-signed: no API auth
            assert response.status_code == 200
            assert len(response.content) == asset.properties.size
            assert Image.open(io.BytesIO(response.content)).size == (256, 384)

        await sdk.generate.run_model("model_bfl-flux-2-dev", body={"prompt": "second"})
        listed = [j.job_id async for j in sdk.jobs.list(page_size=1)]
        assert len(listed) == 2
        assert run.job.job_id in listed

        model = (await sdk.models.retrieve("model_bfl-flux-2-dev")).model
        assert model.inputs is not None
        assert {i.name for i in model.inputs} >= {"prompt", "width", "height", "numOutputs"}

        with pytest.raises(BadRequestError) as rejected:
            await sdk.generate.run_model("model_bfl-flux-2-dev", body={"width": 100})
        assert rejected.value.status_code == 400


async def test_sdk_does_not_retry_rejections_and_sees_429_details() -> None:
    emu = Emulator(EmulatorConfig(seed=3, job_duration=30, parallel_cap=1))
    async with (
        served(emu) as base_url,
        AsyncScenario(base_url=base_url, api_key="local", api_secret="local", max_retries=2) as sdk,
    ):
        with pytest.raises(BadRequestError):
            await sdk.generate.run_model("model_bfl-flux-2-dev", body={"prompt": 3})
        assert emu.stats.requests["POST /v1/generate/custom/{modelId}"] == 1  # not retried
        await sdk.generate.run_model("model_bfl-flux-2-dev", body={"prompt": "a"})
        with pytest.raises(RateLimitError) as limited:
            await sdk.with_options(max_retries=0).generate.run_model(
                "model_bfl-flux-2-dev", body={"prompt": "b"}
            )
    assert limited.value.body == {
        "reason": "Too many custom jobs in progress: your plan allows 1 at a time",
        "hint": "wait for a job to finish, then submit again",
        "details": {"actionName": "parallel-custom-jobs", "limit": 1},
    }
    assert limited.value.response.headers["retry-after"] == "30"


async def test_drop_over_http_breaks_the_response_midway() -> None:
    emu = Emulator(EmulatorConfig(seed=1, faults="jobs:drop=1"))
    async with served(emu) as base_url, httpx.AsyncClient(auth=("local", "local")) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{base_url}/jobs")
        assert (await client.get(f"{base_url}/assets")).status_code == 200


async def test_timeout_over_http_answers_too_late() -> None:
    emu = Emulator(EmulatorConfig(seed=1, faults="generate:timeout=1,timeout_delay=30"))
    async with served(emu) as base_url, httpx.AsyncClient(auth=("local", "local")) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                f"{base_url}/generate/custom/model_bfl-flux-2-dev",
                json={"prompt": "x"},
                timeout=0.3,
            )
        jobs = (await client.get(f"{base_url}/jobs")).json()["jobs"]
    assert len(jobs) == 1  # the work was done


async def test_a_taken_port_raises_oserror_instead_of_exiting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            await serve(Emulator(EmulatorConfig(seed=1)), "127.0.0.1", port)
