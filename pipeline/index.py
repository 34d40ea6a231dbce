"""output/<collection>/index.json: what each collection holds, for a game engine's import scripts.

One document per collection: its items sorted by id, each with prompt, seed, model and files
(name, width, height, sha256) for the engine; and, so that `pipeline lock rebuild` can remake a
lost lock from output/ alone, the rest of the item's lock entry: fingerprint, request,
seed_derived (only when true, as in the lock), and per file its size and asset id (when locked).
A file's caption (`caption: true`) is its `alt` text; a `then:` chain lists its earlier `stages`
(the step, its fingerprint and asset ids, the files a `keep: true` step wrote). `caches` holds
what of the lock's caches the collection uses (trained models, uploads, its remote collection).
Written only when its bytes would change, atomically.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import WriteError
from pipeline.files import write_atomic
from pipeline.lockfile import LockEntry, Lockfile, OutputRecord, StageRecord
from pipeline.manifest import Collection, Item

__all__ = ["write_index", "write_indexes"]


def write_indexes(output_dir: Path, collections: Sequence[Collection], lock: Lockfile) -> None:
    """Every collection's index from the lock; a collection with nothing locked gets none.

    WriteError (naming the index) when the disk refuses one; those already written stay.
    """
    for collection in collections:
        entries = [
            (item, lock.items[item.key]) for item in collection.items if item.key in lock.items
        ]
        if entries:
            try:
                write_index(output_dir, collection.name, entries, _caches(collection, lock))
            except OSError as exc:
                raise WriteError(exc, output_dir / collection.name / "index.json") from None


def _caches(collection: Collection, lock: Lockfile) -> dict[str, dict[str, str]]:
    """What of the lock's caches this collection's items use (for `lock rebuild`): its remote
    collection, the trained models its LoRAs name, the uploads of its input files."""
    trainings: dict[str, str] = {}
    uploads: dict[str, str] = {}
    for item in collection.items:
        entry = lock.items.get(item.key)
        for lora in entry.request.get("loras", ()) if entry else ():
            found = lock.trainings.get(lora.get("training", "")) if isinstance(lora, dict) else None
            if found is not None:
                trainings[lora["training"]] = found
        for file in (item.image, *item.reference_images):
            if file is not None and file.sha256 in lock.uploads:
                uploads[file.sha256] = lock.uploads[file.sha256]
    for training in collection.trainings:
        for file in training.images:
            if file.sha256 in lock.uploads:
                uploads[file.sha256] = lock.uploads[file.sha256]
    caches = {"trainings": trainings, "uploads": uploads}
    if collection.name in lock.collections:
        caches["collections"] = {collection.name: lock.collections[collection.name]}
    return {name: found for name, found in caches.items() if found}


def write_index(
    output_dir: Path,
    collection: str,
    entries: Iterable[tuple[Item, LockEntry]],
    caches: Mapping[str, Mapping[str, str]] | None = None,
) -> bool:
    """`output/<collection>/index.json` for engine import scripts; False when unchanged."""
    items: list[dict[str, Any]] = []
    for item, entry in sorted(entries, key=lambda pair: pair[0].id):
        listed: dict[str, Any] = {
            "id": item.id,
            "prompt": item.prompt,
            "seed": item.seed,
            "model": item.model,
            "fingerprint": entry.fingerprint,
            "request": entry.request,
            "files": [_file(record) for record in entry.outputs],
        }
        if entry.seed_derived:
            listed["seed_derived"] = True
        if entry.stages:  # a `then:` chain's earlier stages; a step's `keep: true` files
            names = ["generation", *(step.name for step in item.steps)]
            listed["stages"] = [_stage(stage, names[k] if k < len(names) else "")
                                for k, stage in enumerate(entry.stages)]  # fmt: skip
        if entry.remote_collection is not None:
            listed["remote_collection"] = entry.remote_collection
        items.append(listed)
    doc: dict[str, Any] = {"collection": collection, "items": items}
    if caches:
        doc["caches"] = {name: dict(found) for name, found in caches.items()}
    path = output_dir / collection / "index.json"
    # Compared in compact form, which the C encoder writes ten times faster than the indented
    # one: a no-op run over thousands of items must not spend its time re-rendering indexes.
    with contextlib.suppress(FileNotFoundError, ValueError):
        if _compact(json.loads(path.read_bytes())) == _compact(doc):
            return False
    data = (json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
    write_atomic(path, data)
    return True


def _compact(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _stage(stage: StageRecord, name: str) -> dict[str, Any]:
    data: dict[str, Any] = {"step": name, "fingerprint": stage.fingerprint}
    if stage.asset_ids:
        data["asset_ids"] = list(stage.asset_ids)
    if stage.kept:
        data["files"] = [_file(record) for record in stage.kept]
    return data


def _file(record: OutputRecord) -> dict[str, Any]:
    data: dict[str, Any] = {
        "file": Path(record.file).name,
        "width": record.width,
        "height": record.height,
        "sha256": record.sha256,
        "size": record.size,
    }
    if record.asset_id is not None:
        data["asset_id"] = record.asset_id
    if record.caption is not None:
        data["alt"] = record.caption
    return data
