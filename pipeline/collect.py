"""Collect: download an output, check it, and put it in place. Owns the files under output/.

A download streams to a temp file beside its target while it is hashed and counted (a size cap
stops a server that never ends), then imagecheck.py checks, in constant memory, that it is a whole
image of the announced format and size; only then is it fsync'd and renamed over the target. A
reader or a crash sees the old file or the new one, whole: a good file is never replaced by a bad
one. The lock is not written here (the scheduler does that once every output of an item is placed).

`Collector` is the stage the scheduler calls: a finished job's outputs, fetched together (one
failure cancels its siblings), each resolved again from its asset id when a URL fails, all within
the job deadline; and a missing item's files put back without a new generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.client import ApiClient
from pipeline.errors import ApiError, DownloadError
from pipeline.files import place, write_atomic
from pipeline.imagecheck import ImageCheckError, check_image
from pipeline.limits import RetryPolicy, Sleep, together
from pipeline.lockfile import OutputRecord
from pipeline.manifest import Item
from pipeline.plan import hash_file
from pipeline.wire import Asset, Job

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


def output_name(item: Item, index: int, mime_type: str, step: str | None = None) -> str:
    """`<item>.png` for a single output, `<item>_<n>.png` (n from 1) for several; a kept
    intermediate result of `then:` step `step` is `<item>.<step>.png` (`<item>_<n>.<step>.png`)."""
    extension = _FORMATS.get(mime_type, ("", ".png"))[1]
    stem = item.id if item.outputs == 1 else f"{item.id}_{index + 1}"
    if step is not None:
        stem = f"{stem}.{step}"
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


def job_assets(item: Item, job: Job, expected: int | None = None) -> list[str]:
    """The asset ids a successful job made: as many as asked for (`item.outputs`) or a
    DownloadError."""
    ids = job.metadata.asset_ids
    wanted = item.outputs if expected is None else expected
    if len(ids) != wanted:
        raise DownloadError(
            job.job_id, f"the job made {len(ids)} asset(s); {wanted} were asked for"
        )
    return list(ids)


@dataclass
class Collector:
    """Puts outputs in place under `output`: a job's, or a missing item's from its lock records."""

    client: ApiClient
    output: Path
    retry: RetryPolicy
    deadline: float  # seconds one download may take, every attempt included
    max_bytes: int
    sleep: Sleep
    rng: random.Random

    async def collect(self, item: Item, job: Job) -> list[OutputRecord]:
        """Every output of a successful job, verified and in place."""
        return await self.collect_ids(item, job_assets(item, job))

    async def collect_ids(
        self, item: Item, ids: Sequence[str], step: str | None = None
    ) -> list[OutputRecord]:
        """These assets (one per output) verified and in place; `step`: as its kept result."""
        # one failing download cancels its siblings
        return await together(
            self._download(item, index, asset_id, step) for index, asset_id in enumerate(ids)
        )

    async def restore(
        self,
        item: Item,
        records: Sequence[OutputRecord],
        *,
        moved: bool,
        step: str | None = None,
    ) -> list[OutputRecord]:
        """Put a missing item's files back without a new generation: a moved item's from its
        old files, the rest by asset id (files still intact are kept as they are)."""
        restored = []
        for index, record in enumerate(records):
            target = self.target(item, index, record.file, step)
            if moved:
                old = self.output / record.file
                if old.is_file() and hash_file(old) == record.sha256:
                    restored.append(copy_output(old, target, record))
                    continue
            elif self._intact(record):
                restored.append(record)
                continue
            if not record.asset_id:
                raise DownloadError("?", f"{record.file} has no asset id to restore it from")
            fetched = await self._download(item, index, record.asset_id, step)
            restored.append(replace(fetched, caption=record.caption))  # the same asset's words
        return restored

    def target(self, item: Item, index: int, name: str, step: str | None = None) -> Target:
        """Where output `index` of `item` goes, keeping the extension of `name`."""
        suffix = Path(name).suffix or ".png"
        rel = output_name(item, index, "", step)
        rel = rel[: -len(Path(rel).suffix)] + suffix
        return Target(rel, self.output / rel)

    async def _download(
        self, item: Item, index: int, asset_id: str, step: str | None = None
    ) -> OutputRecord:
        """Fetch one asset into place, within the deadline (a server that trickles bytes
        forever stays under every read timeout); a failed download resolves the URL again."""
        try:
            async with asyncio.timeout(self.deadline):
                return await self._download_attempts(item, index, asset_id, step)
        except TimeoutError:
            raise DownloadError(asset_id, f"not downloaded within {self.deadline:g} s") from None

    async def _download_attempts(
        self, item: Item, index: int, asset_id: str, step: str | None
    ) -> OutputRecord:
        attempt = 0
        while True:
            attempt += 1
            asset = await self.retry.call(
                lambda: self.client.get_asset(asset_id), sleep=self.sleep, rng=self.rng
            )
            target = self.target(item, index, output_name(item, index, asset.mime_type), step)
            try:
                return await fetch(self.client, asset, target, max_bytes=self.max_bytes)
            except (ApiError, DownloadError) as exc:
                if attempt >= self.retry.attempts:
                    raise
                await self.sleep(self.retry.delay(attempt, exc, self.rng))

    def _intact(self, record: OutputRecord) -> bool:
        path = self.output / record.file
        try:
            return path.stat().st_size == record.size and hash_file(path) == record.sha256
        except OSError:
            return False
