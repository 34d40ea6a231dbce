"""Uploads: local input files (reference images, sketches, training images) as API assets.

Each content is uploaded once, ever: the lock's `uploads` maps its sha256 to the asset id, and
items of one run that share a file share one upload. An upload goes through the journal as a
paid request does (an intent before `POST /assets`, the asset id after it), and one whose
answer was lost is looked for among the account's uploads (by its name, which holds the hash)
before it is sent again: a crash or a dropped connection never uploads a file twice. A cached id
is checked once per run (`GET /assets/{id}`): an asset deleted on the account is uploaded again.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from pipeline.client import ApiClient
from pipeline.errors import ApiRejected, InvalidInput, Location, Problem
from pipeline.inputs import InputFile
from pipeline.journal import Intent, Journal
from pipeline.limits import RetryPolicy, Sleep
from pipeline.lockfile import Lockfile

_PREFIX = "upload-"
T = TypeVar("T")


def upload_name(file: InputFile) -> str:
    """The asset's name: the file's, after the start of its hash (how a lost upload is found)."""
    return f"{file.sha256[:16]}-{file.name}"


class Uploads:
    """Asset ids of local files for one run (`asset_id`), uploading what the lock lacks."""

    def __init__(
        self,
        client: ApiClient,
        root: Path,
        lock: Lockfile,
        journal: Journal,
        intents: dict[str, Intent],
        *,
        retry: RetryPolicy,
        sleep: Sleep,
        rng: random.Random,
        now: Callable[[], str],
        saved: Callable[[str, str], None],
        cache: bool = True,
        margin: float = 60.0,
    ) -> None:
        self.client, self.root, self.lock, self.journal = client, root, lock, journal
        self._intents = intents  # shared with the runner: uploads take the `upload-` ones
        self.retry, self.sleep, self.rng, self.now = retry, sleep, rng, now
        self._saved = saved  # (journal key, asset id): the lock is dirty; forget after a flush
        self.cache = cache  # False on the local backend: its assets end with the run
        self.margin = margin
        self._ids: dict[str, asyncio.Future[str]] = {}
        self.uploaded = 0  # uploads this run sent

    async def asset_id(self, file: InputFile) -> str:
        """The asset id of `file`'s content, uploaded if need be (once however many ask)."""
        future = self._ids.get(file.sha256)
        if future is None:
            future = self._ids[file.sha256] = asyncio.ensure_future(self._ensure(file))
        return await asyncio.shield(future)

    async def settle_rest(self) -> None:
        """The upload intents this run had no use for (a training's images, when a crashed run
        had trained it already): an upload the API has is kept in the lock's cache, one it has
        not is forgotten. So the journal ends empty, and nothing is uploaded twice later."""
        for key in [key for key in self._intents if key.startswith(_PREFIX)]:
            intent = self._intents.pop(key)
            sha = key.removeprefix(_PREFIX)
            found = intent.job_id if intent.job_id and await self._exists(intent.job_id) else None
            found = found or await self._find(intent)
            if found is None:
                self.journal.forget(key)
                continue
            self.journal.attach(intent, found)
            if self.cache:
                self.lock.uploads.setdefault(sha, found)
            self._saved(key, found)

    async def _ensure(self, file: InputFile) -> str:
        known = self.lock.uploads.get(file.sha256) if self.cache else None
        if known and await self._exists(known):
            return known
        key = _PREFIX + file.sha256
        intent = self._intents.pop(key, None)
        if intent is not None:
            found = intent.job_id if intent.job_id and await self._exists(intent.job_id) else None
            found = found or await self._find(intent)
            if found is not None:
                self.journal.attach(intent, found)  # forgotten once the lock has it
                return self._record(file, key, found)
        intent = Intent(key, file.path, "", {"name": upload_name(file)}, self.now())
        try:
            data = await asyncio.to_thread((self.root / file.path).read_bytes)
        except OSError as exc:
            where = Location(file.path)
            raise InvalidInput([Problem(where, f"cannot be read ({exc.strerror})")]) from None
        await asyncio.to_thread(self.journal.write, intent)

        async def send() -> str:
            asset = await self.client.upload_asset(
                upload_name(file), data, mime_type=file.mime_type
            )
            return asset.id

        asset_id = await self.retry.send_once(
            send, functools.partial(self._find, intent), sleep=self.sleep, rng=self.rng
        )
        self.uploaded += 1
        self.journal.attach(intent, asset_id)
        return self._record(file, key, asset_id)

    def _record(self, file: InputFile, key: str, asset_id: str) -> str:
        if self.cache:
            self.lock.uploads[file.sha256] = asset_id
        self._saved(key, asset_id)
        return asset_id

    async def _exists(self, asset_id: str) -> bool:
        try:
            await self._call(lambda: self.client.get_asset(asset_id))
        except ApiRejected as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def _find(self, intent: Intent) -> str | None:
        """The upload this intent describes, if it reached the API: the earliest uploaded asset
        of that name created after the intent (less a clock-skew margin)."""
        since = datetime.fromisoformat(intent.created_at) - timedelta(seconds=self.margin)
        after = since.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        name = intent.body.get("name")
        token: str | None = None
        found: list[tuple[str, str]] = []
        while True:
            page = functools.partial(
                self.client.list_assets_page, token, types=["uploaded"], created_after=after
            )
            assets, token = await self._call(page)
            found += [(a.created_at, a.id) for a in assets if a.metadata.name == name]
            if token is None:
                break
        return min(found)[1] if found else None

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await self.retry.call(fn, sleep=self.sleep, rng=self.rng)
