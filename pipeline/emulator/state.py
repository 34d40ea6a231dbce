"""The emulator's store: records by id, their lazy progress, asset bytes, and persistence.

Jobs settle (outputs created, training finished) the first time someone looks after their end
time. Asset bytes are rendered on first need and kept in memory; with a state_dir, every record
and file is also written there (atomically) and read back by the next emulator.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.emulator import render
from pipeline.emulator.catalogue import CATALOGUE, CATALOGUE_DATE, LORA_TYPES, PRESET_LORAS
from pipeline.emulator.records import (
    AssetRecord,
    CollectionRecord,
    JobRecord,
    ModelRecord,
    Record,
    make_id,
)
from pipeline.emulator.render import ImageFacts
from pipeline.emulator.wire import not_found

_KINDS: dict[str, type[Record]] = {
    "jobs": JobRecord,
    "assets": AssetRecord,
    "models": ModelRecord,
    "collections": CollectionRecord,
}
_MODEL_STATUS = {"success": "trained", "failure": "failed", "canceled": "training-canceled"}


class Store:
    """Every record the emulated account owns."""

    def __init__(self, *, seed: int, clock: Callable[[], float], state_dir: Path | None) -> None:
        self._seed = seed
        self._clock = clock
        self._dir = state_dir
        self.jobs: dict[str, JobRecord] = {}
        self.assets: dict[str, AssetRecord] = {}
        self.models: dict[str, ModelRecord] = {}
        self.collections: dict[str, CollectionRecord] = {}
        self._content: dict[str, bytes] = {}
        self._counters: dict[str, int] = {}
        self._unsettled: set[str] = set()
        if state_dir is not None:
            self._load(state_dir)
        for model_id, name in PRESET_LORAS.items():
            if model_id not in self.models:
                self.models[model_id] = ModelRecord(
                    model_id,
                    name,
                    LORA_TYPES[0],
                    CATALOGUE_DATE,
                    CATALOGUE_DATE,
                    preset_status="trained",
                )

    def new_id(self, prefix: str) -> str:
        """A fresh id such as `asset_…`; reproducible for a given seed and history."""
        n = self._counters.get(prefix, 0)
        self._counters[prefix] = n + 1
        self._write("meta.json", {"format": 1, "counters": self._counters})
        return make_id(prefix, self._seed, n)

    # Jobs

    def add_job(self, job: JobRecord) -> None:
        """Keep a new job (it settles later, when looked at after its end)."""
        self.jobs[job.id] = job
        self._unsettled.add(job.id)
        self.save("jobs", job)

    def job(self, job_id: str) -> JobRecord:
        """A job, settled if its time has come; 404 if unknown."""
        job = self.jobs.get(job_id)
        if job is None:
            raise not_found("job", job_id)
        self._settle(job)
        return job

    def settle_all(self) -> None:
        """Apply the effects of every job that has ended by now."""
        for job_id in list(self._unsettled):
            self._settle(self.jobs[job_id])

    def in_flight(self, job_type: str) -> list[JobRecord]:
        """Jobs of a type that have not ended yet."""
        now = self._clock()
        return [
            self.jobs[i]
            for i in self._unsettled
            if self.jobs[i].job_type == job_type and self.jobs[i].end > now
        ]

    def cancel(self, job: JobRecord) -> None:
        """Stop a job now (the caller checked it is still running)."""
        job.canceled_at = self._clock()
        self.save("jobs", job)

    def _settle(self, job: JobRecord) -> None:
        if job.settled or self._clock() < job.end:
            return
        if job.final_status == "success" and job.job_type == "custom":
            count = int(job.recipe.get("count", 1))
            for index in range(count):
                job.asset_ids.append(self._make_output(job, index).id)
        job.settled = True
        self._unsettled.discard(job.id)
        self.save("jobs", job)

    def _make_output(self, job: JobRecord, index: int) -> AssetRecord:
        recipe = dict(job.recipe, output_index=index)
        width, height = recipe["width"], recipe["height"]
        lora = job.inputs.get("modelId")
        metadata = {
            "type": recipe["source"],
            "kind": "image",
            # As uiConfig.lorasComponent.modelIdInput says: the LoRA's id goes on the outputs.
            "modelId": lora if isinstance(lora, str) else job.model_id,
            **({"baseModelId": job.model_id} if isinstance(lora, str) else {}),
            "prompt": recipe.get("prompt", ""),
            "seed": str(recipe["seed"]),
            "width": width,
            "height": height,
            "numOutputs": recipe.get("count", 1),
            "outputIndex": index,
            "parentJobId": job.id,
            **{
                k: v for k, v in job.inputs.items() if k in _ECHOED and k not in ("width", "height")
            },
        }
        asset = AssetRecord(
            id=self.new_id("asset"),
            created=job.end,
            updated=job.end,
            source=recipe["source"],
            metadata=metadata,
            recipe=recipe,
            job_id=job.id,
            output_index=index,
            width=width,
            height=height,
        )
        self.assets[asset.id] = asset
        self.save("assets", asset)
        return asset

    # Assets

    def add_asset(self, asset: AssetRecord, data: bytes, facts: ImageFacts) -> AssetRecord:
        """Keep an asset whose bytes are known (an upload)."""
        self._fill(asset, data, facts)
        self.assets[asset.id] = asset
        self._content[asset.id] = data
        self._write(f"files/{asset.id}.{asset.format}", data)
        self.save("assets", asset)
        return asset

    def upload(
        self,
        data: bytes,
        facts: ImageFacts,
        name: str,
        *,
        hidden: bool = False,
        collection_ids: list[str] | None = None,
        parent_id: str | None = None,
    ) -> AssetRecord:
        """A new `uploaded` asset holding `data`."""
        now = self._clock()
        metadata: dict[str, Any] = {"type": "uploaded", "kind": "image", "name": name}
        if parent_id:
            metadata["parentId"] = parent_id
        asset = AssetRecord(
            id=self.new_id("asset"),
            created=now,
            updated=now,
            source="uploaded",
            metadata=metadata,
            hidden=hidden,
            collection_ids=list(collection_ids or []),
        )
        return self.add_asset(asset, data, facts)

    def asset(self, asset_id: str) -> AssetRecord:
        """A live asset with its size known; 404 if unknown or deleted."""
        asset = self.assets.get(asset_id)
        if asset is None or asset.deleted is not None:
            raise not_found("asset", asset_id)
        self.content(asset)
        return asset

    def content(self, asset: AssetRecord) -> bytes:
        """The asset's file: from memory, else from state_dir, else rendered now."""
        data = self._content.get(asset.id)
        if data is not None:
            return data
        path = self._dir / "files" / f"{asset.id}.{asset.format}" if self._dir else None
        if path is not None and path.exists():
            data = path.read_bytes()
        else:
            data = self._render(asset.recipe or {})
            self._write(f"files/{asset.id}.{asset.format}", data)
        self._content[asset.id] = data
        if not asset.size:
            self._fill(asset, data, render.inspect(data))
            self.save("assets", asset)
        return data

    def _fill(self, asset: AssetRecord, data: bytes, facts: ImageFacts) -> None:
        asset.size, asset.width, asset.height = len(data), facts.width, facts.height
        asset.format, asset.mime_type = facts.format, facts.mime_type

    def _render(self, recipe: dict[str, Any]) -> bytes:
        sources = [self.content(self.assets[i]) for i in recipe.get("images", [])]
        mode = recipe.get("mode")
        if mode == "remove-background":
            return render.remove_background(sources[0])
        if mode == "upscale":
            return render.upscale(sources[0], int(recipe["scale"]))
        return render.placeholder(
            prompt=recipe.get("prompt", ""),
            seed=int(recipe.get("seed", 0)),
            output_index=int(recipe.get("output_index", 0)),
            width=int(recipe["width"]),
            height=int(recipe["height"]),
            caption=recipe.get("model_id", ""),
            references=sources,
        )

    # Lookups for schema.check

    def asset_facts(self, asset_id: str) -> ImageFacts | None:
        """Facts of a live asset, or None."""
        asset = self.assets.get(asset_id)
        if asset is None or asset.deleted is not None:
            return None
        self.content(asset)
        return ImageFacts(asset.format, asset.mime_type, asset.width, asset.height, False)

    def model_state(self, model_id: str) -> tuple[str, str] | None:
        """(status, type) of a usable model, or None."""
        if model_id in CATALOGUE:
            return "trained", "custom"
        model = self.models.get(model_id)
        return None if model is None else (self.model_status(model), model.type)

    def model_status(self, model: ModelRecord) -> str:
        """new, training, trained, failed or training-canceled, as of now."""
        if model.job_id is None:
            return model.preset_status
        job = self.job(model.job_id)
        return _MODEL_STATUS.get(job.snapshot(self._clock()).status, "training")

    # Persistence

    def save(self, kind: str, record: Record) -> None:
        """Write one record to state_dir (no-op without one)."""
        self._write(f"{kind}/{record.id}.json", record.to_json())

    def forget(self, kind: str, record_id: str) -> None:
        """Remove a deleted record's file from state_dir."""
        if self._dir is not None:
            (self._dir / kind / f"{record_id}.json").unlink(missing_ok=True)

    def _write(self, name: str, payload: dict[str, Any] | bytes) -> None:
        if self._dir is None:
            return
        path = self._dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = payload if isinstance(payload, bytes) else json.dumps(payload, indent=1).encode()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def _load(self, root: Path) -> None:
        meta = root / "meta.json"
        if meta.exists():
            self._counters = dict(json.loads(meta.read_text())["counters"])
        tables: dict[str, dict[str, Any]] = {
            "jobs": self.jobs,
            "assets": self.assets,
            "models": self.models,
            "collections": self.collections,
        }
        for kind, cls in _KINDS.items():
            for path in sorted((root / kind).glob("*.json")):
                record = cls.from_json(json.loads(path.read_text()))
                tables[kind][record.id] = record
        self._unsettled = {i for i, job in self.jobs.items() if not job.settled}


# Generation inputs copied into each output's metadata (besides prompt, seed and size).
_ECHOED = frozenset(
    {"negativePrompt", "guidance", "numInferenceSteps", "strength", "image", "referenceImages"}
    | {"aspectRatio", "scale", "loras", "lorasScale"}
)
