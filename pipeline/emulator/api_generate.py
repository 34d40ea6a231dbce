"""Routes for generation and jobs: /generate/custom/{modelId}, /generate/caption, /jobs.

A generate call is validated, priced, checked against the parallel cap, and becomes a `queued`
job whose outputs appear when it is looked at after its end. Paging and filters follow
scenario-api.md §5.1, including empty pages with a token still following.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.emulator import catalogue, schema
from pipeline.emulator.faults import format_retry_after
from pipeline.emulator.middleware import fault_plan
from pipeline.emulator.records import TERMINAL, AssetRecord, JobRecord
from pipeline.emulator.stats import request_key
from pipeline.emulator.wire import (
    AUTHOR_ID,
    ApiProblem,
    bad_request,
    cost_envelope,
    job_json,
    json_body,
    not_found,
    optional_iso,
    page_size,
    paginate,
)

if TYPE_CHECKING:
    from pipeline.emulator.app import Emulator

DRY_RUN_STATUS = 269
FAILURE_ERROR = "Generation failed: the inference worker stopped unexpectedly (emulated fault)"
FAILURE_HINT = "Run the job again; if it keeps failing, try fewer outputs or a smaller size"
_SORTED_BY_UPDATE = ("status", "type", "types", "workflowId")


def dry_run(request: Request) -> bool:
    """Whether `?dryRun=` asks for an estimate (true or api); 400 on other values."""
    value = request.query_params.get("dryRun")
    if value is None or value == "false":
        return False
    if value in ("true", "api"):
        return True
    raise bad_request(f"Invalid dryRun {value!r}: expected true or api")


def routes(emu: Emulator) -> list[Route]:
    """The generation and job routes of `emu`."""
    store, stats = emu.store, emu.stats

    async def generate(request: Request) -> Response:
        model_id = request.path_params["modelId"]
        model = catalogue.CATALOGUE.get(model_id)
        if model is None:
            if model_id in store.models:
                raise bad_request(
                    f"Model {model_id} is a LoRA and cannot be run on its own",
                    hint=f'run {catalogue.FLUX} with "modelId": "{model_id}" in the body',
                )
            raise not_found("model", model_id)
        dry = dry_run(request)
        body = await json_body(request)
        checked = schema.check(model, body, store)
        cost = catalogue.cost(model, checked.values)
        if dry:
            return JSONResponse(cost_envelope(cost, "custom-generation"), DRY_RUN_STATUS)
        _check_parallel_cap(emu)
        cost *= emu.config.bill_factor
        inputs = dict(body)
        for upload in checked.uploads:
            asset = store.upload(upload.data, upload.facts, f"{upload.input}.{upload.facts.format}")
            if upload.index is None:
                inputs[upload.input] = asset.id
            else:
                inputs[upload.input] = [*inputs[upload.input]]
                inputs[upload.input][upload.index] = asset.id
        job_id = store.new_id("job")
        rng = random.Random(f"{emu.seed}:{job_id}")
        seed = checked.values.get("seed")
        if seed is None:
            seed = rng.randrange(2**31) if model.input("seed") else 0
        plan = fault_plan(request.scope)
        failed = "job_failure" in plan
        stuck = "stuck" in plan and not failed
        if failed:
            stats.record_fault("job_failure")
        if stuck:
            stats.record_fault("stuck")
        width, height = checked.size
        images = [
            ref
            for spec in model.inputs
            if spec["type"] in ("file", "file_array") and spec["name"] in inputs
            for ref in _as_list(inputs[spec["name"]])
        ]
        job = JobRecord(
            id=job_id,
            job_type="custom",
            model_id=model.id,
            created=emu.clock(),
            duration=emu.job_duration.sample(rng),
            outcome="failure" if failed else "success",
            inputs=inputs,
            cost=cost,
            error=FAILURE_ERROR if failed else "",
            hint=FAILURE_HINT if failed else "",
            stuck=stuck,
            recipe={
                "mode": model.mode,
                "source": model.source,
                "model_id": model.id,
                "prompt": str(checked.values.get("prompt", "")),
                "seed": int(seed),
                "width": width,
                "height": height,
                "count": catalogue.output_count(model, checked.values),
                "images": images,
                "scale": int(checked.values.get("scale", 1)),
            },
        )
        store.add_job(job)
        stats.job_started(job.id, job.created, job.end)
        # A failed job is no result: sending its request again is not paying twice for one.
        key = request_key(model.id, body) if not failed else f"failed {job.id}"
        stats.record_generate(key, cost)
        now = emu.clock()  # read before settling: a job shown ended has its outputs (see get_job)
        store.job(job.id)  # a zero-length job is already done
        envelope = cost_envelope(cost, "custom-generation")
        return JSONResponse({"job": job_json(job, now), **envelope})

    async def caption(request: Request) -> Response:
        dry = dry_run(request)
        body = await json_body(request)
        images = body.get("images", body.get("assetIds"))
        if not isinstance(images, list) or not images:
            raise bad_request('Missing required field "images": a non-empty array of asset ids')
        captions = [_caption(emu, item, f"images[{i}]", body) for i, item in enumerate(images)]
        envelope = cost_envelope(float(len(images)), "caption")
        if dry:
            return JSONResponse(envelope, DRY_RUN_STATUS)
        now = emu.clock()
        job = JobRecord(
            id=store.new_id("job"),
            job_type="caption",
            model_id=str(body.get("modelId", "")),
            created=now,
            duration=0.0,
            inputs=body,
            cost=float(len(images)),
            output={"captions": captions},
        )
        stats.record_paid("caption", body, float(len(images)))
        store.add_job(job)
        store.job(job.id)
        result: dict[str, Any] = {"captions": captions, "job": job_json(job, now), **envelope}
        if "detailsLevel" in body:
            result["detailsLevel"] = body["detailsLevel"]
        return JSONResponse(result)

    async def get_job(request: Request) -> Response:
        # The time is read before the job settles (which reads the clock again): a job that
        # ends in between is shown still running, never `success` without its assetIds.
        now = emu.clock()
        job = store.job(request.path_params["jobId"])
        return JSONResponse({"job": job_json(job, now)})

    async def list_jobs(request: Request) -> Response:
        query = request.query_params
        size = page_size(request, default=50, maximum=100)
        by_update = any(name in query for name in _SORTED_BY_UPDATE)
        if by_update and "createdAfter" in query:
            raise bad_request(
                "createdAfter cannot be combined with status, type, types or workflowId",
                hint="these filters sort jobs by update time: use updatedAfter",
            )
        if not by_update and "updatedAfter" in query:
            raise bad_request(
                "updatedAfter needs status, type, types or workflowId",
                hint="without those filters jobs sort by creation time: use createdAfter",
            )
        created_after = optional_iso(query, "createdAfter")
        updated_after = optional_iso(query, "updatedAfter")
        types = query["types"].split(",") if query.get("types") else None
        types = types or ([query["type"]] if query.get("type") else None)
        now = emu.clock()
        store.settle_all()
        snaps = {job.id: job.snapshot(now) for job in store.jobs.values()}

        def key(job: JobRecord) -> list[Any]:
            t = snaps[job.id].updated if by_update else job.created
            return [-t, job.id]

        def keep(job: JobRecord) -> bool:
            snap = snaps[job.id]
            return (
                ("status" not in query or snap.status == query["status"])
                and (types is None or job.job_type in types)
                and ("workflowId" not in query)
                and (query.get("authorId", AUTHOR_ID) == AUTHOR_ID)
                and (created_after is None or job.created > created_after)
                and (updated_after is None or snap.updated > updated_after)
            )

        ordered = sorted(store.jobs.values(), key=key)
        page, token = paginate(
            ordered, key=key, size=size, token=query.get("paginationToken"), keep=keep
        )
        result: dict[str, Any] = {"jobs": [job_json(job, now) for job in page]}
        if token:
            result["nextPaginationToken"] = token
        return JSONResponse(result)

    async def job_action(request: Request) -> Response:
        job = store.job(request.path_params["jobId"])
        body = await json_body(request)
        action = body.get("action")
        if action != "cancel":
            raise bad_request(f"Invalid action {action!r}: the only action is cancel")
        if job.job_type != "custom":
            raise bad_request(
                f"Job {job.id} is a {job.job_type} job; only inference jobs can be canceled here",
                hint="cancel a training with POST /models/{modelId}/train/action",
            )
        status = job.snapshot(emu.clock()).status
        if status in TERMINAL:
            raise bad_request(f"Job {job.id} has already ended ({status}); it cannot be canceled")
        store.cancel(job)
        stats.job_ended(job.id, job.end)
        now = emu.clock()
        store.job(job.id)
        return JSONResponse({"job": job_json(job, now)})

    return [
        Route("/v1/generate/custom/{modelId}", generate, methods=["POST"]),
        Route("/v1/generate/caption", caption, methods=["POST"]),
        Route("/v1/jobs", list_jobs, methods=["GET"]),
        Route("/v1/jobs/{jobId}", get_job, methods=["GET"]),
        Route("/v1/jobs/{jobId}/action", job_action, methods=["POST"]),
    ]


def _check_parallel_cap(emu: Emulator) -> None:
    cap = emu.config.parallel_cap
    if cap is None:
        return
    emu.store.settle_all()
    running = emu.store.in_flight("custom")
    if len(running) < cap:
        return
    first_end = min(job.end for job in running)  # infinite when every job is stuck
    free_in = max(1, math.ceil(first_end - emu.clock())) if math.isfinite(first_end) else 60
    retry_after = emu.faults.retry_after
    raise ApiProblem(
        429,
        f"Too many custom jobs in progress: your plan allows {cap} at a time",
        hint="wait for a job to finish, then submit again",
        details={"actionName": "parallel-custom-jobs", "limit": cap},
        headers={
            "retry-after": format_retry_after(free_in if retry_after is None else retry_after)
        },
    )


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _caption(emu: Emulator, item: Any, where: str, body: dict[str, Any]) -> str:
    if not isinstance(item, str):
        raise bad_request(f"Invalid {where}: expected an asset id or a data URL")
    if item.startswith("data:"):
        _, facts = schema.decode_image(item, f"Invalid {where}")
        text = f"an image, {facts.width}x{facts.height}"
    else:
        asset = emu.store.assets.get(item)
        if asset is None or asset.deleted is not None:
            raise bad_request(f'Invalid {where}: asset "{item}" not found')
        emu.store.content(asset)
        text = f"{_subject(emu, asset)}, {asset.width}x{asset.height}"
    if body.get("detailsLevel") == "action+style":
        text += ", flat placeholder style with simple shapes"
    return text[0].upper() + text[1:]


def _subject(emu: Emulator, asset: AssetRecord) -> str:
    """What a picture shows: its prompt, else (a post-processed result) its source's."""
    seen: set[str] = set()
    while asset.id not in seen:
        seen.add(asset.id)
        prompt = str(asset.metadata.get("prompt", "")).strip().rstrip(".")
        if prompt:
            return prompt
        parent = asset.metadata.get("image") or asset.metadata.get("parentId")
        found = emu.store.assets.get(parent) if isinstance(parent, str) else None
        if found is None:
            break
        asset = found
    if asset.source == "uploaded":
        return f"an uploaded picture named {asset.metadata.get('name', asset.id)}"
    return "a picture"
