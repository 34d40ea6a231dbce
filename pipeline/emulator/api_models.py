"""Routes for models: the public catalogue, the account's own models, and LoRA training.

A model made with POST /models collects training images while `new`; PUT /train starts a training
job, and the model reads `training` until the job ends, then `trained` (usable as a LoRA through a
`model` input), `failed` or `training-canceled`. Shapes follow scenario-api.md §3.5 and §5.4-5.5.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.emulator.api_generate import DRY_RUN_STATUS, dry_run
from pipeline.emulator.catalogue import CATALOGUE, CATALOGUE_DATE, FLUX, LORA_TYPES, CatalogueModel
from pipeline.emulator.files import signed_url
from pipeline.emulator.middleware import fault_plan
from pipeline.emulator.records import JobRecord, ModelRecord, TrainingImage
from pipeline.emulator.schema import decode_image
from pipeline.emulator.wire import (
    AUTHOR_ID,
    OWNER_ID,
    bad_request,
    cost_envelope,
    iso,
    job_json,
    json_body,
    not_found,
    page_size,
    paginate,
)

if TYPE_CHECKING:
    from pipeline.emulator.app import Emulator

TRAINABLE_TYPES = (*LORA_TYPES, "flux.1-lora", "qwen-image-lora", "zimage-lora")
MAX_TRAINING_IMAGES_PER_CALL = 10
_STAGES = {"queued": "queued-for-train", "in-progress": "running-train"}


TRAINING_ERROR = "Training diverged: the loss did not converge on these images"
TRAINING_HINT = "use more images (10 to 30) with one consistent style, or lower learningRate"


def train_cost(images: int) -> float:
    """Compute Units for training a LoRA on `images` images."""
    return 100.0 + 5.0 * images


def routes(emu: Emulator) -> list[Route]:
    """The model and training routes of `emu`."""
    store = emu.store

    def own(model_id: str) -> ModelRecord:
        model = store.models.get(model_id)
        if model is None:
            if model_id in CATALOGUE:
                raise bad_request(f"Model {model_id} is a public model; it cannot be changed")
            raise not_found("model", model_id)
        return model

    def shown(request: Request, model: ModelRecord | CatalogueModel) -> dict[str, Any]:
        if isinstance(model, CatalogueModel):
            return _public_json(model)
        status = store.model_status(model)
        body: dict[str, Any] = {
            **_common(model.id, model.created, model.updated),
            "status": status,
            "type": model.type,
            "custom": False,
            "capabilities": ["txt2img", "img2img"],
            "privacy": "private",
            "source": "scenario",
            "collectionIds": list(model.collection_ids),
            "trainingImagesNumber": len(model.training_images),
            "name": model.name,
            "shortDescription": model.short_description,
            "parameters": model.parameters,
            "compliantModelIds": [FLUX],
            "trainingImages": [_image_json(emu, request, t) for t in model.training_images[:3]],
        }
        if model.base_model_id:
            body["baseModelId"] = model.base_model_id
        if model.job_id:
            now = emu.clock()  # before settling: shown ended means settled (see get_job)
            job = store.job(model.job_id)
            snap = job.snapshot(now)
            body["jobId"] = job.id
            body["updatedAt"] = iso(max(model.updated, snap.updated))
            body["trainingProgress"] = {
                "stage": _STAGES.get(snap.status, "running-train"),
                "updatedAt": int(snap.updated * 1000),
                "progress": snap.progress,
                "startedAt": int(job.created * 1000),
            }
        return body

    async def list_models(request: Request) -> Response:
        query = request.query_params
        size = page_size(request, default=100, maximum=500)
        privacy = query.get("privacy", "private")
        if privacy not in ("private", "public"):
            raise bad_request(f"Invalid privacy {privacy!r}: expected private or public")
        mine = sorted(store.models.values(), key=lambda m: (-m.created, m.id))
        items: list[ModelRecord | CatalogueModel] = [*CATALOGUE.values()]
        if privacy == "private":
            items = [*mine]

        order = {model.id: n for n, model in enumerate(items)}

        def key(model: ModelRecord | CatalogueModel) -> list[Any]:
            return [order[model.id]]

        def keep(model: ModelRecord | CatalogueModel) -> bool:
            if "status" not in query:
                return True
            status = "trained" if isinstance(model, CatalogueModel) else store.model_status(model)
            return status == query["status"]

        token = query.get("paginationToken")
        page, next_token = paginate(items, key=key, size=size, token=token, keep=keep)
        result: dict[str, Any] = {"models": [shown(request, m) for m in page]}
        if next_token:
            result["nextPaginationToken"] = next_token
        return JSONResponse(result)

    async def get_model(request: Request) -> Response:
        model_id = request.path_params["modelId"]
        found = CATALOGUE.get(model_id) or store.models.get(model_id)
        if found is None:
            raise not_found("model", model_id)
        return JSONResponse({"model": shown(request, found)})

    async def create_model(request: Request) -> Response:
        body = await json_body(request)
        model_type = body.get("type", LORA_TYPES[0])
        if model_type not in TRAINABLE_TYPES:
            raise bad_request(
                f"Invalid type {model_type!r}",
                hint=f"trainable types: {', '.join(TRAINABLE_TYPES)}",
            )
        now = emu.clock()
        model = ModelRecord(
            id=store.new_id("model"),
            name=str(body.get("name", "")),
            type=model_type,
            created=now,
            updated=now,
            short_description=str(body.get("shortDescription", "")),
            base_model_id=body.get("baseModelId"),
            collection_ids=[str(c) for c in body.get("collectionIds", [])],
        )
        store.models[model.id] = model
        store.save("models", model)
        return JSONResponse({"model": shown(request, model)})

    async def add_training_images(request: Request) -> Response:
        model = own(request.path_params["modelId"])
        if store.model_status(model) != "new":
            raise bad_request(
                f"Model {model.id} is {store.model_status(model)}; add images while new"
            )
        body = await json_body(request)
        if "assetIds" in body:
            asset_ids = body["assetIds"]
            if not isinstance(asset_ids, list) or not 1 <= len(asset_ids) <= 10:
                raise bad_request(f'"assetIds": 1 to {MAX_TRAINING_IMAGES_PER_CALL} asset ids')
            assets = [store.asset(str(i)) for i in asset_ids]
        elif "assetId" in body:
            assets = [store.asset(str(body["assetId"]))]
        elif isinstance(body.get("data"), str):
            data, facts = decode_image(body["data"], 'Invalid "data"')
            name = str(body.get("name") or f"training-image.{facts.format}")
            assets = [store.upload(data, facts, name, hidden=True)]
        else:
            raise bad_request('Send "data" (a data URL) and "name", or "assetId", or "assetIds"')
        now = emu.clock()
        added = [
            TrainingImage(
                id=store.new_id("trainingImage"),
                name=str(body.get("name") or a.metadata.get("name") or a.id),
                asset_id=a.id,
                created=now,
                preset=str(body.get("preset", "default")),
            )
            for a in assets
        ]
        model.training_images.extend(added)
        model.updated = now
        store.save("models", model)
        return JSONResponse({"trainingImage": _image_json(emu, request, added[0])})

    async def train(request: Request) -> Response:
        model = own(request.path_params["modelId"])
        dry = dry_run(request)
        count = len(model.training_images)
        simulated = request.query_params.get("trainingImagesCount")
        if dry and simulated is not None:
            if not simulated.isdigit():
                raise bad_request(f"Invalid trainingImagesCount {simulated!r}: expected a count")
            count = int(simulated)
        envelope = cost_envelope(train_cost(count), "train-model")
        status = store.model_status(model)
        if status != "new":
            raise bad_request(f"Model {model.id} is {status}; only a new model can be trained")
        if count < 1:
            raise bad_request(
                f"Model {model.id} has no training images",
                hint=f"POST /models/{model.id}/training-images first",
            )
        if dry:
            return JSONResponse(envelope, DRY_RUN_STATUS)
        body = await json_body(request)
        job_id = store.new_id("job")
        rng = random.Random(f"{emu.seed}:{job_id}")
        failed = "job_failure" in fault_plan(request.scope)
        if failed:
            emu.stats.record_fault("job_failure")
        job = JobRecord(
            id=job_id,
            job_type="flux-model-training" if model.type.startswith("flux") else "model-training",
            model_id=model.id,
            created=emu.clock(),
            duration=emu.training_duration.sample(rng),
            outcome="failure" if failed else "success",
            inputs={"parameters": body.get("parameters", {})},
            cost=train_cost(count),
            output_model_id=model.id,
            error=TRAINING_ERROR if failed else "",
            hint=TRAINING_HINT if failed else "",
        )
        images = sorted(
            hashlib.sha256(store.content(store.assets[t.asset_id])).hexdigest()
            for t in model.training_images
        )
        work = {"type": model.type, "images": images, "parameters": body.get("parameters", {})}
        if failed:  # a failed training is no result: training it again is not paying twice
            work["failed job"] = job_id
        emu.stats.record_paid("training", work, train_cost(count))
        store.add_job(job)
        model.job_id = job.id
        model.parameters = dict(body.get("parameters") or {})
        model.updated = job.created
        store.save("models", model)
        now = emu.clock()
        return JSONResponse({"job": job_json(job, now), "model": shown(request, model), **envelope})

    async def train_action(request: Request) -> Response:
        model = own(request.path_params["modelId"])
        body = await json_body(request)
        if body.get("action") != "cancel":
            raise bad_request(f"Invalid action {body.get('action')!r}: the only action is cancel")
        status = store.model_status(model)
        if status != "training" or model.job_id is None:
            raise bad_request(f"Model {model.id} is {status}; only a training can be canceled")
        store.cancel(store.job(model.job_id))
        store.job(model.job_id)
        return JSONResponse({"model": shown(request, model)})

    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models", create_model, methods=["POST"]),
        Route("/v1/models/{modelId}", get_model, methods=["GET"]),
        Route("/v1/models/{modelId}/training-images", add_training_images, methods=["POST"]),
        Route("/v1/models/{modelId}/train", train, methods=["PUT"]),
        Route("/v1/models/{modelId}/train/action", train_action, methods=["POST"]),
    ]


def _common(model_id: str, created: float, updated: float) -> dict[str, Any]:
    return {
        "id": model_id,
        "tags": [],
        "exampleAssetIds": [],
        "createdAt": iso(created),
        "updatedAt": iso(updated),
        "ownerId": OWNER_ID,
        "authorId": AUTHOR_ID,
    }


def _public_json(model: CatalogueModel) -> dict[str, Any]:
    body: dict[str, Any] = {
        **_common(model.id, CATALOGUE_DATE, CATALOGUE_DATE),
        "status": "trained",
        "type": "custom",
        "custom": True,
        "capabilities": list(model.capabilities),
        "privacy": "public",
        "source": "other",
        "collectionIds": [],
        "trainingImagesNumber": 0,
        "name": model.name,
        "shortDescription": model.short_description,
        "inputs": [dict(spec) for spec in model.inputs],
    }
    if model.ui_config:
        body["uiConfig"] = model.ui_config
    return body


def _image_json(emu: Emulator, request: Request, image: TrainingImage) -> dict[str, Any]:
    asset = emu.store.assets[image.asset_id]
    emu.store.content(asset)
    return {
        "id": image.id,
        "name": image.name,
        "description": "",
        "automaticCaptioning": "",
        "createdAt": iso(image.created),
        "downloadUrl": signed_url(emu, request, asset),
    }
