"""Every answer validates against the official SDK's pydantic types (scenario-sdk 2.4.0).

The SDK's client parses leniently; validating with `model_validate` here catches a missing
required field or a wrong type that the lenient parser would let through.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from scenario_sdk import types as sdk
from scenario_sdk.types import assets as sdk_assets
from scenario_sdk.types import collections as sdk_collections
from scenario_sdk.types import models as sdk_models

from pipeline.emulator import Emulator
from tests.emulator.support import FLUX, FakeClock, MakeEmulator, client_for, png, upload

PUBLIC_MODELS = [
    "model_bfl-flux-2-dev",
    "model_imagen4-ultra",
    "photoroom-background-remover",
    "google-gemini-3-1-flash",
    "model_upscale-v3",
]


async def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.is_success, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def emu(make_emulator: MakeEmulator) -> Emulator:
    return make_emulator(job_duration=1)


async def test_generation_and_job_answers_match_the_sdk_types(
    emu: Emulator, clock: FakeClock
) -> None:
    async with client_for(emu) as client:
        body = {"prompt": "x", "numOutputs": 2, "modelId": "model_pixel-style"}
        run = await ok(await client.post(FLUX, json=body))
        sdk.GenerateRunModelResponse.model_validate(run)
        dry = await client.post(FLUX, params={"dryRun": "true"}, json=body)
        assert sdk.GenerateRunModelResponse.model_construct(**dry.json()).creative_units_cost
        job_id = run["job"]["jobId"]
        sdk.JobRetrieveResponse.model_validate(await ok(await client.get(f"/jobs/{job_id}")))
        clock.advance(5)
        done = await ok(await client.get(f"/jobs/{job_id}"))
        sdk.JobRetrieveResponse.model_validate(done)
        for job in (await ok(await client.get("/jobs")))["jobs"]:
            sdk.JobListResponse.model_validate(job)
        second = (await ok(await client.post(FLUX, json={"prompt": "y"})))["job"]["jobId"]
        canceled = await client.post(f"/jobs/{second}/action", json={"action": "cancel"})
        sdk.JobTriggerActionResponse.model_validate(await ok(canceled))
        asset_id = done["job"]["metadata"]["assetIds"][0]
        caption = await client.post("/generate/caption", json={"images": [asset_id]})
        sdk.GenerateCaptionResponse.model_validate(await ok(caption))


async def test_asset_and_collection_answers_match_the_sdk_types(emu: Emulator) -> None:
    async with client_for(emu) as client:
        asset_id = await upload(client, png())
        one = await ok(await client.get(f"/assets/{asset_id}"))
        sdk.AssetRetrieveResponse.model_validate(one)
        for asset in (await ok(await client.get("/assets")))["assets"]:
            sdk.AssetListResponse.model_validate(asset)
        bulk = await client.post("/assets/get-bulk", json={"assetIds": [asset_id]})
        sdk.AssetGetBulkResponse.model_validate(await ok(bulk))
        download = await client.post(f"/assets/{asset_id}/download", json={})
        sdk_assets.DownloadRequestResponse.model_validate(await ok(download))
        created = await ok(await client.post("/collections", json={"name": "c"}))
        sdk.CollectionCreateResponse.model_validate(created)
        cid = created["collection"]["id"]
        added = await client.put(f"/collections/{cid}/assets", json={"assetIds": [asset_id]})
        sdk_collections.AssetAddResponse.model_validate(await ok(added))
        got = await ok(await client.get(f"/collections/{cid}"))
        sdk.CollectionRetrieveResponse.model_validate(got)
        for collection in (await ok(await client.get("/collections")))["collections"]:
            sdk.CollectionListResponse.model_validate(collection)


async def test_model_and_training_answers_match_the_sdk_types(emu: Emulator) -> None:
    async with client_for(emu) as client:
        for model_id in [*PUBLIC_MODELS, "model_pixel-style"]:
            got = await ok(await client.get(f"/models/{model_id}"))
            sdk.ModelRetrieveResponse.model_validate(got)
        for privacy in ("public", "private"):
            listed = await ok(await client.get("/models", params={"privacy": privacy}))
            for model in listed["models"]:
                sdk.ModelListResponse.model_validate(model)
        created = await ok(await client.post("/models", json={"name": "m"}))
        sdk.ModelCreateResponse.model_validate(created)
        model_id = created["model"]["id"]
        image = await client.post(
            f"/models/{model_id}/training-images", json={"assetId": await upload(client, png())}
        )
        sdk_models.TrainingImageAddResponse.model_validate(await ok(image))
        trained = await ok(await client.put(f"/models/{model_id}/train"))
        sdk_models.TrainTriggerResponse.model_validate(trained)
        sdk.ModelRetrieveResponse.model_validate(await ok(await client.get(f"/models/{model_id}")))
        canceled = await client.post(f"/models/{model_id}/train/action", json={"action": "cancel"})
        sdk_models.TrainActionResponse.model_validate(await ok(canceled))
