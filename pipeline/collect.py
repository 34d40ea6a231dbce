"""Collect: download an output, check it, and put it in place. Owns the files under output/.

A download streams to a temp file beside its target while it is hashed and counted (a size cap
stops a server that never ends), then imagecheck.py checks, in constant memory, that it is a whole
image of the announced format and size; only then is it fsync'd and renamed over the target. A
reader or a crash sees the old file or the new one, whole: a good file is never replaced by a bad
one. The lock is not written here (the scheduler does that once every output of an item is placed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.client import ApiClient
from pipeline.errors import DownloadError
from pipeline.files import place, write_atomic
from pipeline.imagecheck import ImageCheckError, check_image
from pipeline.lockfile import OutputRecord
from pipeline.manifest import Item
from pipeline.wire import Asset

MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
_CHUNK = 1 << 16
_FORMATS = {
    "image/png": ("PNG", ".png"),
    "image/jpeg": ("JPEG", ".jpg"),
    "image/webp": ("WEBP", ".webp"),
}


@dataclass(frozen=True)
class Target:
    """Where one output goes: `rel` is relative to the output folder."""

    rel: str
    path: Path


def output_name(item: Item, index: int, mime_type: str) -> str:
    """`<item>.png` for a single output, `<item>_<n>.png` (n from 1) for several."""
    extension = _FORMATS.get(mime_type, ("", ".png"))[1]
    stem = item.id if item.outputs == 1 else f"{item.id}_{index + 1}"
    return f"{item.collection}/{stem}{extension}"


async def fetch(
    client: ApiClient,
    asset: Asset,
    target: Target,
    *,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> OutputRecord:
    """Download `asset` into `target.path`, verified, atomically; the record for the lock."""
    expected = _FORMATS.get(asset.mime_type)
    if expected is None:
        raise DownloadError(asset.id, f"unsupported type {asset.mime_type!r}; expected an image")
    target.path.parent.mkdir(parents=True, exist_ok=True)
    # One temp name per target: a download cut short by a crash is replaced by the next attempt.
    temp = target.path.with_name(f".{target.path.name}.part")
    try:
        digest, size = await _stream(client, asset, temp, max_bytes)
        width, height = await asyncio.to_thread(_verify, temp, asset, expected[0])
        place(temp, target.path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return OutputRecord(
        file=target.rel, sha256=digest, size=size, width=width, height=height, asset_id=asset.id
    )


async def _stream(client: ApiClient, asset: Asset, temp: Path, max_bytes: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with temp.open("wb") as handle:
        async with client.download(asset.url) as response:
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise DownloadError(asset.id, f"announced {declared} bytes, over the cap")
            async for chunk in response.aiter_raw(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise DownloadError(asset.id, f"larger than the {max_bytes}-byte cap")
                digest.update(chunk)
                handle.write(chunk)
            if declared and declared.isdigit() and int(declared) != size:
                raise DownloadError(asset.id, f"truncated: got {size} of {declared} bytes")
    if size == 0:
        raise DownloadError(asset.id, "empty download")
    return digest.hexdigest(), size


def _verify(path: Path, asset: Asset, expected_format: str) -> tuple[int, int]:
    """The file must be a whole image of the announced format and size; then it is fsync'd."""
    try:
        image_format, width, height = check_image(path)
    except ImageCheckError as exc:
        raise DownloadError(asset.id, str(exc)) from None
    if image_format != expected_format:
        raise DownloadError(asset.id, f"is {image_format}, announced as {asset.mime_type}")
    announced = (asset.properties.width, asset.properties.height)
    if None not in announced and announced != (width, height):
        raise DownloadError(
            asset.id, f"is {width}x{height}, announced as {announced[0]}x{announced[1]}"
        )
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
    return width, height


def copy_output(source: Path, target: Target, record: OutputRecord) -> OutputRecord:
    """Restore a moved item's file from its old place (no download), checked against the lock."""
    data = source.read_bytes()
    if hashlib.sha256(data).hexdigest() != record.sha256:
        raise DownloadError(record.asset_id or "?", f"{source} no longer matches the lock")
    write_atomic(target.path, data)
    return replace(record, file=target.rel)
