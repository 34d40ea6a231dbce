"""Test helpers that stand in for stages not under test (e.g. a finished run)."""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.lockfile import (
    LockEntry,
    Lockfile,
    OutputRecord,
    StageRecord,
    read_lock,
    write_lock,
)
from pipeline.manifest import Item, load_manifests, load_settings
from pipeline.plan import plan_collections
from pipeline.state import STATE_DIR, StatCache


def png_bytes(width: int, height: int, colour: tuple[int, int, int] = (200, 60, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def settle(root: Path, *, backend: str = "local") -> Lockfile:
    """Do what a successful run would: write a file and a lock entry for every pending item."""
    settings = load_settings(root)
    collections = load_manifests(root, settings)
    lock_path = root / settings.lockfile
    lock = read_lock(lock_path)
    plan = plan_collections(
        collections,
        lock,
        backend=backend,
        output_dir=root / settings.output,
        stat_cache=StatCache.load(root / STATE_DIR),
        remote_default=settings.remote_collection,
    )
    remote = backend != "local"
    for training in plan.new_trainings:
        lock.trainings[training.fingerprint] = f"model_{training.name}" if remote else ""
    for entry in plan.pending:
        assert entry.item is not None and entry.fingerprint is not None
        item = entry.item

        def files(tag: str, step: str | None = None, item: Item = item) -> tuple[OutputRecord, ...]:
            return _fake_files(root / settings.output, item, tag, step, remote=remote)

        stages = tuple(
            StageRecord(
                fingerprint,
                tuple(f"asset_{n}{fingerprint[:12]}" for n in range(item.outputs))
                if remote
                else (),
                files(fingerprint, item.steps[k - 1].name) if k and item.steps[k - 1].keep else (),
            )
            for k, fingerprint in enumerate(entry.stages[:-1])
        )
        lock.items[entry.key] = LockEntry(
            fingerprint=entry.fingerprint,
            request=dict(entry.request or {}),
            seed_derived=item.seed_derived,
            outputs=files(entry.fingerprint),
            stages=stages,
        )
    for sync in plan.collections:
        remote_id = lock.collections.setdefault(
            sync.name, f"collection_{sync.name}" if remote else ""
        )
        for key in sync.to_add:
            lock.items[key] = replace(lock.items[key], remote_collection=remote_id)
    write_lock(lock_path, lock)
    return lock


def _fake_files(
    output: Path, item: Item, tag: str, step: str | None, *, remote: bool
) -> tuple[OutputRecord, ...]:
    """An item's outputs (or a kept step's files) written as plain PNGs, and their records."""
    records = []
    for n in range(item.outputs):
        stem = item.id if item.outputs == 1 else f"{item.id}_{n + 1}"
        rel = f"{item.collection}/{stem}{'.' + step if step else ''}.png"
        data = png_bytes(item.width or 64, item.height or 64)
        path = output / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        records.append(
            OutputRecord(
                file=rel,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                width=item.width or 64,
                height=item.height or 64,
                asset_id=f"asset_{n}{tag[:12]}" if remote else None,
                caption=f"a picture of {item.id}" if item.caption and not step else None,
            )
        )
    return tuple(records)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1, 1.0 and True differ), nan equal to nan."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)
