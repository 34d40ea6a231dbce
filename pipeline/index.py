"""output/<collection>/index.json: what each collection holds, for a game engine's import scripts.

One document per collection: its items sorted by id, each with prompt, seed, model and files
(name, width, height, sha256) for the engine; and, so that `pipeline lock rebuild` can remake a
lost lock from output/ alone, the rest of the item's lock entry: fingerprint, request,
seed_derived (only when true, as in the lock), and per file its size and asset id (when locked).
Written only when its bytes would change, atomically.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import WriteError
from pipeline.files import write_atomic
from pipeline.lockfile import LockEntry, Lockfile, OutputRecord
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
                write_index(output_dir, collection.name, entries)
            except OSError as exc:
                raise WriteError(exc, output_dir / collection.name / "index.json") from None


def write_index(
    output_dir: Path, collection: str, entries: Iterable[tuple[Item, LockEntry]]
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
        items.append(listed)
    doc = {"collection": collection, "items": items}
    data = (json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
    path = output_dir / collection / "index.json"
    with contextlib.suppress(FileNotFoundError):
        if path.read_bytes() == data:
            return False
    write_atomic(path, data)
    return True


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
    return data
