"""POST /generate/custom and /generate/caption: auth, validation, dry runs, outputs, captions."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from pipeline.emulator import Emulator
from tests.emulator.support import (
    FLUX,
    FakeClock,
    MakeEmulator,
    client_for,
    data_url,
    finish,
    generate,
    png,
    upload,
)


@pytest.mark.parametrize(
    "auth",
    [None, ("local", "wrong"), ("other", "local")],
    ids=["missing", "wrong-secret", "wrong-key"],
)
async def test_rejects_requests_without_the_emulator_credentials(
    emu: Emulator, auth: tuple[str, str] | None
) -> None:
    async with client_for(emu, auth=auth) as client:
        response = await client.get("/jobs")
    assert response.status_code == 401
    assert response.headers["x-should-retry"] == "false"
    assert "Unauthorized" in response.json()["reason"]


async def test_rejects_a_bearer_token(emu: Emulator) -> None:
    async with client_for(emu, auth=None) as client:
        response = await client.get("/jobs", headers={"Authorization": "Bearer abc"})
    assert response.status_code == 401


async def test_accepts_configured_credentials(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(api_key="k", api_secret="s")
    async with client_for(emu, auth=("k", "s")) as client:
        assert (await client.get("/jobs")).status_code == 200
    async with client_for(emu) as client:
        assert (await client.get("/jobs")).status_code == 401


async def test_generate_answers_a_queued_custom_job_with_its_cost(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        FLUX, json={"prompt": "iron sword", "width": 512, "height": 768, "numOutputs": 2}
    )
    assert response.status_code == 200
    body = response.json()
    job = body["job"]
    assert job["jobType"] == "custom"
    assert job["status"] == "queued"
    assert job["progress"] == 0
    assert job["jobId"].startswith("job_")
    assert [h["status"] for h in job["statusHistory"]] == ["queued"]
    assert job["metadata"]["input"] == {
        "prompt": "iron sword",
        "width": 512,
        "height": 768,
        "numOutputs": 2,
    }
    assert job["billing"] == {"cuCost": 20, "cuDiscount": 0}
    assert body["creativeUnitsCost"] == 20
    assert body["costDetails"] == {"custom-generation": 20}
    for field in ("createdAt", "updatedAt", "statusHistory", "metadata", "progress"):
        assert field in job


@pytest.mark.parametrize("mode", ["true", "api"])
async def test_dry_run_answers_269_with_the_cost_and_creates_nothing(
    emu: Emulator, client: httpx.AsyncClient, mode: str
) -> None:
    body = {"prompt": "x", "numOutputs": 3, "referenceImages": None}
    body.pop("referenceImages")
    response = await client.post(FLUX, params={"dryRun": mode}, json=body)
    assert response.status_code == 269
    assert response.json() == {
        "creativeUnitsCost": 30,
        "creativeUnitsDiscount": 0,
        "costDetails": {"custom-generation": 30},
    }
    assert emu.store.jobs == {}
    assert emu.stats.jobs_created == 0
    assert emu.stats.generates == {}


async def test_dry_run_with_a_data_url_uploads_nothing(
    emu: Emulator, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        FLUX, params={"dryRun": "true"}, json={"prompt": "x", "image": data_url(png())}
    )
    assert response.status_code == 269
    assert emu.store.assets == {}


async def test_dry_run_still_validates(client: httpx.AsyncClient) -> None:
    response = await client.post(FLUX, params={"dryRun": "true"}, json={"width": 512})
    assert response.status_code == 400


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/generate/custom/model_nope", json={"prompt": "x"})
    assert response.status_code == 404
    assert response.headers["x-should-retry"] == "false"
    assert "model_nope" in response.json()["reason"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"width": 512}, 'Missing required input "prompt"'),
        ({"prompt": "x", "colour": "red"}, 'Unknown input "colour"'),
        ({"prompt": 3}, 'Invalid input "prompt": expected a string, got int'),
        ({"prompt": "x", "width": 1000}, 'Invalid input "width": 1000 is not a multiple of 16'),
        ({"prompt": "x", "width": 4096}, 'Invalid input "width": 4096 is out of range'),
        ({"prompt": "x", "height": 128}, 'Invalid input "height": 128 is out of range'),
        ({"prompt": "x", "width": "512"}, 'Invalid input "width": expected a number'),
        ({"prompt": "x", "width": True}, 'Invalid input "width": expected a number'),
        ({"prompt": "x", "numOutputs": 5}, 'Invalid input "numOutputs": 5 is out of range'),
        ({"prompt": "x", "numOutputs": 0}, 'Invalid input "numOutputs": 0 is out of range'),
        ({"prompt": "x", "guidance": 3.55}, 'Invalid input "guidance": 3.55 is not a multiple'),
        ({"prompt": "x", "image": "asset_missing"}, 'Invalid input "image": asset "asset_missing"'),
        ({"prompt": "x", "image": "not-a-ref"}, '"image": asset "not-a-ref" not found'),
        ({"prompt": "x", "image": "data:image/png;base64,aGVsbG8="}, "the data is not an image"),
        ({"prompt": "x", "modelId": "model_nope"}, 'Invalid input "modelId": model "model_nope"'),
        ({"prompt": "x", "loras": "model_pixel-style"}, 'Invalid input "loras": expected an array'),
        ({"prompt": "x", "dryRun": "true"}, '"dryRun" is not an input'),
    ],
)
async def test_validation_errors_name_the_input(
    client: httpx.AsyncClient, body: dict[str, Any], reason: str
) -> None:
    response = await client.post(FLUX, json=body)
    assert response.status_code == 400
    assert response.headers["x-should-retry"] == "false"
    assert reason in response.json()["reason"]


async def test_unknown_input_hint_lists_the_valid_inputs(client: httpx.AsyncClient) -> None:
    response = await client.post(FLUX, json={"prompt": "x", "steps": 3})
    assert "numInferenceSteps" in response.json()["hint"]


async def test_imagen_takes_an_aspect_ratio_from_its_allowed_values(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    url = "/generate/custom/model_imagen4-ultra"
    bad = await client.post(url, json={"prompt": "x", "aspectRatio": "2:1"})
    assert bad.status_code == 400
    assert "is not one of the allowed values: '1:1'" in bad.json()["reason"]
    sized = await client.post(url, json={"prompt": "x", "width": 512})
    assert sized.status_code == 400
    job = (await client.post(url, json={"prompt": "x", "aspectRatio": "16:9"})).json()["job"]
    done = await finish(client, clock, job["jobId"])
    asset = (await client.get(f"/assets/{done['metadata']['assetIds'][0]}")).json()["asset"]
    assert (asset["properties"]["width"], asset["properties"]["height"]) == (1408, 768)


async def test_outputs_have_the_metadata_of_the_request(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    job = await generate(client, prompt="golden shield", seed=42, numOutputs=2, width=256)
    done = await finish(client, clock, job["jobId"])
    ids = done["metadata"]["assetIds"]
    assert len(ids) == 2
    bulk = (await client.post("/assets/get-bulk", json={"assetIds": ids})).json()["assets"]
    assert [a["outputIndex"] for a in bulk] == [0, 1]
    for asset in bulk:
        meta = asset["metadata"]
        assert meta["type"] == "txt2img"
        assert meta["kind"] == "image"
        assert meta["prompt"] == "golden shield"
        assert meta["seed"] == "42"
        assert (meta["width"], meta["height"]) == (256, 512)
        assert meta["modelId"] == "model_bfl-flux-2-dev"
        assert asset["properties"]["format"] == "png"
        assert asset["properties"]["size"] > 0


async def test_a_missing_seed_is_chosen_and_recorded(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    job = await generate(client)
    done = await finish(client, clock, job["jobId"])
    asset = (await client.get(f"/assets/{done['metadata']['assetIds'][0]}")).json()["asset"]
    assert asset["metadata"]["seed"].isdigit()


async def test_data_url_inputs_become_uploaded_assets(
    emu: Emulator, client: httpx.AsyncClient
) -> None:
    job = await generate(client, image=data_url(png(32, 32)))
    asset_id = job["metadata"]["input"]["image"]
    assert asset_id.startswith("asset_")
    assert emu.store.assets[asset_id].source == "uploaded"


async def test_a_trained_lora_can_be_used_and_tags_the_outputs(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    job = await generate(client, modelId="model_pixel-style", loras=[], lorasScale=[])
    done = await finish(client, clock, job["jobId"])
    asset = (await client.get(f"/assets/{done['metadata']['assetIds'][0]}")).json()["asset"]
    assert asset["metadata"]["modelId"] == "model_pixel-style"
    assert asset["metadata"]["baseModelId"] == "model_bfl-flux-2-dev"


async def test_a_public_model_is_not_a_lora(client: httpx.AsyncClient) -> None:
    response = await client.post(FLUX, json={"prompt": "x", "modelId": "model_imagen4-ultra"})
    assert response.status_code == 400
    assert "is of type custom; expected flux.2-dev-lora" in response.json()["reason"]


async def test_running_a_lora_directly_says_which_model_to_run(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/generate/custom/model_pixel-style", json={"prompt": "x"})
    assert response.status_code == 400
    assert "model_bfl-flux-2-dev" in response.json()["hint"]


async def test_background_remover_needs_its_image(client: httpx.AsyncClient) -> None:
    response = await client.post("/generate/custom/photoroom-background-remover", json={})
    assert response.status_code == 400
    assert response.json()["reason"].startswith('Missing required input "image"')


async def test_upscale_refuses_outputs_past_the_size_limit(client: httpx.AsyncClient) -> None:
    big = await upload(client, png(2100, 16))
    response = await client.post(
        "/generate/custom/model_upscale-v3", json={"image": big, "scale": 4}
    )
    assert response.status_code == 400
    assert "8400x64" in response.json()["reason"]


async def test_caption_answers_in_the_order_of_the_images(
    emu: Emulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    job = await generate(client, prompt="healing potion, red liquid.")
    done = await finish(client, clock, job["jobId"])
    generated = done["metadata"]["assetIds"][0]
    uploaded = await upload(client, png(10, 20), name="sketch.png")
    response = await client.post("/generate/caption", json={"images": [uploaded, generated]})
    assert response.status_code == 200
    body = response.json()
    assert body["captions"] == [
        "An uploaded picture named sketch.png, 10x20",
        "Healing potion, red liquid, 512x512",
    ]
    assert body["job"]["jobType"] == "caption"
    assert body["job"]["status"] == "success"
    assert body["costDetails"] == {"caption": 2}


async def test_caption_dry_run_is_269_and_creates_no_job(
    emu: Emulator, client: httpx.AsyncClient
) -> None:
    image = data_url(png())
    response = await client.post(
        "/generate/caption", params={"dryRun": "true"}, json={"images": [image]}
    )
    assert response.status_code == 269
    assert response.json()["creativeUnitsCost"] == 1
    assert emu.store.jobs == {}


async def test_caption_rejects_unknown_assets(client: httpx.AsyncClient) -> None:
    response = await client.post("/generate/caption", json={"images": ["asset_nope"]})
    assert response.status_code == 400
    assert "images[0]" in response.json()["reason"]


async def test_unknown_routes_answer_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nothing/here")
    assert response.status_code == 404
    assert response.json()["reason"] == "Not found"


async def test_raw_base64_upload_is_accepted(client: httpx.AsyncClient) -> None:
    raw = base64.b64encode(png(5, 7)).decode()
    response = await client.post("/assets", json={"name": "a.png", "image": raw})
    assert response.json()["asset"]["properties"]["width"] == 5
