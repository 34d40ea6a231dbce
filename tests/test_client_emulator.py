"""ApiClient against the in-process emulator: both sides of the wire contract agree.

test_client.py pins the client's requests byte for byte; this checks that what the client sends
the emulator accepts, and what the emulator answers the client's models read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeline.client import ApiClient, Credentials
from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.errors import ApiAuthError, ApiRejected
from tests.emulator.support import FakeClock, png

FLUX = "model_bfl-flux-2-dev"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Emulator:
    return Emulator(EmulatorConfig(seed=7, job_duration=2.0), clock=clock, sleep=clock.sleep)


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[ApiClient]:
    creds = Credentials(emu.config.api_key, emu.config.api_secret)
    async with ApiClient(base_url=emu.base_url, credentials=creds, transport=emu.transport()) as c:
        yield c


async def test_a_generation_from_dry_run_to_download(client: ApiClient, clock: FakeClock) -> None:
    body = {"prompt": "iron sword icon", "width": 512, "height": 512}
    dry = await client.generate(FLUX, body, dry_run=True)
    assert dry.job is None and dry.cost.creative_units_cost is not None
    started = await client.generate(FLUX, body)
    assert started.job is not None and not started.job.is_terminal
    clock.advance(3600)
    done = await client.get_job(started.job.job_id)
    assert done.status == "success" and len(done.metadata.asset_ids) == 1
    listed = [job.job_id async for job in client.list_jobs(page_size=1)]
    assert started.job.job_id in listed
    asset = await client.get_asset(done.metadata.asset_ids[0])
    assert [a.id for a in await client.get_assets([asset.id])] == [asset.id]
    async with client.download(asset.url) as response:
        data = await response.aread()
    assert data.startswith(b"\x89PNG") and len(data) == asset.properties.size


async def test_models_uploads_collections_training_and_captions(client: ApiClient) -> None:
    flux = await client.get_model(FLUX)
    assert flux.inputs and any(spec.name == "prompt" for spec in flux.inputs)
    uploaded = await client.upload_asset("ref.png", png())
    made = await client.create_collection("icons")
    filled = await client.add_to_collection(made.id, [uploaded.id])
    assert filled.asset_count == 1
    captions = await client.caption([uploaded.id])
    assert len(captions.captions) == 1
    model = await client.create_model(name="pixel", type="flux.1-lora")
    await client.add_training_image(model.id, asset_id=uploaded.id)
    await client.add_training_image(model.id, data=png(), name="two.png")
    priced = await client.train(model.id, dry_run=True)
    assert priced.job is None and priced.model is None
    trained = await client.train(model.id, parameters={"rank": 16})
    assert trained.job is not None and trained.model is not None


async def test_emulator_errors_become_ours(client: ApiClient, emu: Emulator) -> None:
    with pytest.raises(ApiRejected) as caught:
        await client.generate(FLUX, {"prompt": "x", "steps": 3})
    assert caught.value.status == 400 and caught.value.reason
    wrong = Credentials(emu.config.api_key, "wrong")
    async with ApiClient(base_url=emu.base_url, credentials=wrong, transport=emu.transport()) as c:
        with pytest.raises(ApiAuthError):
            await c.get_job("job_1")
