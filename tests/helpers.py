"""Test helpers that stand in for stages not under test (e.g. a finished run)."""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.lockfile import LockEntry, Lockfile, OutputRecord, read_lock, write_lock
from pipeline.manifest import load_manifests, load_settings
from pipeline.plan import make_plan
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
    plan = make_plan(
        [item for collection in collections for item in collection.items],
        lock,
        backend=backend,
        output_dir=root / settings.output,
        stat_cache=StatCache.load(root / STATE_DIR),
    )
    for entry in plan.pending:
        assert entry.item is not None and entry.fingerprint is not None
        item = entry.item
        outputs = []
        for n in range(item.outputs):
            name = f"{item.id}.png" if item.outputs == 1 else f"{item.id}_{n + 1}.png"
            rel = f"{item.collection}/{name}"
            data = png_bytes(item.width or 64, item.height or 64)
            path = root / settings.output / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            outputs.append(
                OutputRecord(
                    file=rel,
                    sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data),
                    width=item.width or 64,
                    height=item.height or 64,
                    asset_id=f"asset_{n}{entry.fingerprint[:12]}",
                )
            )
        lock.items[entry.key] = LockEntry(
            fingerprint=entry.fingerprint,
            request=dict(entry.request or {}),
            seed_derived=item.seed_derived,
            outputs=tuple(outputs),
        )
    write_lock(lock_path, lock)
    return lock


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
