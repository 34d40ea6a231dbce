"""Models: the public catalogue with its input schemas, own models, and LoRA training."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pipeline.emulator import Emulator
from tests.emulator.support import FLUX, FakeClock, data_url, finish, generate, png, upload

PUBLIC = [
    "model_bfl-flux-2-dev",
    "model_imagen4-ultra",
    "photoroom-background-remover",
    "google-gemini-3-1-flash",
    "model_upscale-v3",
]


async def test_flux_declares_its_inputs_and_lora_component(client: httpx.AsyncClient) -> None:
    model = (await client.get("/models/model_bfl-flux-2-dev")).json()["model"]
    for field in ("id", "status", "type", "custom", "capabilities", "privacy", "source"):
        assert field in model
    for field in ("collectionIds", "tags", "exampleAssetIds", "trainingImagesNumber"):
        assert field in model
    assert (model["status"], model["custom"], model["privacy"]) == ("trained", True, "public")
    inputs = {spec["name"]: spec for spec in model["inputs"]}
    assert inputs["width"] == {
        "name": "width",
        "type": "number",
        "min": 256,
        "max": 2048,
        "step": 16,
        "default": 1024,
    }
    assert inputs["prompt"]["required"] == {"always": True}
    assert (inputs["numOutputs"]["min"], inputs["numOutputs"]["max"]) == (1, 4)
    assert inputs["modelId"]["type"] == "model"
    assert model["uiConfig"]["lorasComponent"]["modelIdInput"] == "modelId"
    for spec in model["inputs"]:
        assert {"name", "type"} <= spec.keys()


async def test_imagen_uses_aspect_ratios(client: httpx.AsyncClient) -> None:
    model = (await client.get("/models/model_imagen4-ultra")).json()["model"]
    names = [spec["name"] for spec in model["inputs"]]
    assert "width" not in names
    ratio = next(spec for spec in model["inputs"] if spec["name"] == "aspectRatio")
    assert "16:9" in ratio["allowedValues"]


async def test_lists_public_and_private_models_with_paging(client: httpx.AsyncClient) -> None:
    public = (await client.get("/models", params={"privacy": "public", "pageSize": 3})).json()
    assert [m["id"] for m in public["models"]] == PUBLIC[:3]
    rest = await client.get(
        "/models",
        params={
            "privacy": "public",
            "pageSize": 3,
            "paginationToken": public["nextPaginationToken"],
        },
    )
    assert [m["id"] for m in rest.json()["models"]] == PUBLIC[3:]
    private = (await client.get("/models")).json()["models"]
    assert {m["id"] for m in private} == {"model_pixel-style", "model_watercolor-style"}
    assert all(m["status"] == "trained" for m in private)


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/models/model_nope")).status_code == 404


async def new_model(client: httpx.AsyncClient, **body: Any) -> str:
    response = await client.post("/models", json={"name": "pixel-dungeon", **body})
    assert response.status_code == 200
    model = response.json()["model"]
    assert model["status"] == "new"
    model_id: str = model["id"]
    return model_id


async def test_training_makes_a_lora_that_generation_accepts(
    emu: Emulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    model_id = await new_model(client)
    early = await client.post(FLUX, json={"prompt": "x", "modelId": model_id})
    assert "is not trained (status new)" in early.json()["reason"]
    image = await client.post(
        f"/models/{model_id}/training-images", json={"data": data_url(png()), "name": "a.png"}
    )
    assert image.status_code == 200
    assert image.json()["trainingImage"]["name"] == "a.png"
    assets = [await upload(client, png()), await upload(client, png())]
    await client.post(f"/models/{model_id}/training-images", json={"assetIds": assets})
    dry = await client.put(f"/models/{model_id}/train", params={"dryRun": "true"})
    assert dry.status_code == 269
    assert dry.json()["costDetails"] == {"train-model": 115}
    assert (await client.get(f"/models/{model_id}")).json()["model"]["status"] == "new"
    started = await client.put(f"/models/{model_id}/train", json={"parameters": {"rank": 16}})
    assert started.status_code == 200
    body = started.json()
    assert body["model"]["status"] == "training"
    assert body["job"]["jobType"] == "flux-model-training"
    assert body["job"]["metadata"]["outputModelId"] == model_id
    model = (await client.get(f"/models/{model_id}")).json()["model"]
    assert model["trainingImagesNumber"] == 3
    assert model["trainingProgress"]["stage"] == "queued-for-train"
    clock.advance(emu.training_duration.a + 1)
    assert (await client.get(f"/models/{model_id}")).json()["model"]["status"] == "trained"
    job = await generate(client, modelId=model_id)
    done = await finish(client, clock, job["jobId"])
    assert done["status"] == "success"


async def test_training_can_be_canceled(client: httpx.AsyncClient, clock: FakeClock) -> None:
    model_id = await new_model(client)
    asset_id = await upload(client, png())
    await client.post(f"/models/{model_id}/training-images", json={"assetId": asset_id})
    await client.put(f"/models/{model_id}/train")
    clock.advance(1)
    response = await client.post(f"/models/{model_id}/train/action", json={"action": "cancel"})
    assert response.json()["model"]["status"] == "training-canceled"
    again = await client.put(f"/models/{model_id}/train")
    assert again.status_code == 400


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("train", None, "has no training images"),
        ("training-images", {}, 'Send "data"'),
        ("training-images", {"assetIds": ["asset_nope"]}, "asset asset_nope not found"),
    ],
)
async def test_training_rejects_bad_requests(
    client: httpx.AsyncClient, path: str, body: dict[str, Any] | None, reason: str
) -> None:
    model_id = await new_model(client)
    method = "PUT" if path == "train" else "POST"
    response = await client.request(method, f"/models/{model_id}/{path}", json=body)
    assert response.status_code in (400, 404)
    assert reason in response.json()["reason"]


async def test_create_rejects_unknown_types(client: httpx.AsyncClient) -> None:
    response = await client.post("/models", json={"type": "sdxl"})
    assert response.status_code == 400
    assert "flux.2-dev-lora" in response.json()["hint"]
