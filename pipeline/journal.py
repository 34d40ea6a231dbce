"""Money safety on disk: an intent before every paid request, the job id right after it.

One small file per paid request under `.pipeline/jobs/`, named by the fingerprint of what it
pays for, written atomically (fsync) before the request leaves. A run that dies anywhere leaves:
  - an intent with a job id: the job exists; the next run re-attaches to it and pays nothing;
  - an intent without one: the request may or may not have reached the API; the next run looks for
    a job created after the intent with the same inputs before it ever sends the request again.
The entry is forgotten once the item's files and lock entry are safely written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.files import write_atomic
from pipeline.lockfile import Lockfile

_FOLDER = "jobs"


@dataclass(frozen=True)
class Intent:
    """A paid request about to be sent (or sent): enough to find its job again."""

    fingerprint: str
    key: str
    model: str
    body: Mapping[str, Any]
    created_at: str  # ISO 8601 UTC wall clock when the intent was written
    job_id: str | None = None
    attempts: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


class Journal:
    """The intents of one repo, in `<state dir>/jobs/`.

    `enabled=False` keeps nothing on disk: for the in-process local backend, whose jobs end with
    the process, so there is never anything to re-attach to.
    """

    def __init__(self, state_dir: Path, *, enabled: bool = True) -> None:
        self.folder = state_dir / _FOLDER
        self.enabled = enabled

    def load(self) -> dict[str, Intent]:
        """Every readable intent, by fingerprint. An unreadable file is skipped, never fatal."""
        intents: dict[str, Intent] = {}
        if not self.enabled or not self.folder.is_dir():
            return intents
        for path in sorted(self.folder.glob("*.json")):
            try:
                data = json.loads(path.read_bytes())
                intent = Intent(
                    fingerprint=str(data["fingerprint"]),
                    key=str(data["key"]),
                    model=str(data["model"]),
                    body=dict(data["body"]),
                    created_at=str(data["created_at"]),
                    job_id=data.get("job_id"),
                    attempts=int(data.get("attempts", 0)),
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if path.stem == intent.fingerprint:
                intents[intent.fingerprint] = intent
        return intents

    def write(self, intent: Intent, *, durable: bool = True) -> None:
        """Persist an intent (fsync'd) before the request it describes is sent."""
        if not self.enabled:
            return
        data = asdict(intent)
        data.pop("notes")
        data["body"] = dict(intent.body)
        text = json.dumps(data, sort_keys=True).encode()
        write_atomic(self._path(intent.fingerprint), text, durable=durable)

    def attach(self, intent: Intent, job_id: str) -> Intent:
        """Record the job id the API gave for this intent.

        Not fsync'd: if a power cut loses it, the durable intent is still there and the next run
        finds the job by reconciling against the job list, so nothing is paid twice.
        """
        attached = replace(intent, job_id=job_id)
        self.write(attached, durable=False)
        return attached

    def settle(self, lock: Lockfile) -> int:
        """Forget the intents whose result the lock provably holds (a run killed between
        writing the lock and forgetting them leaves such); how many went. Never one the lock
        only seems to cover: an older result under the same key (a training redone because its
        model was deleted) is not the new request's."""
        if not self.folder.is_dir():
            return 0
        stale = [intent for intent in self.load().values() if covered(intent, lock)]
        for intent in stale:
            self._path(intent.fingerprint).unlink(missing_ok=True)
        return len(stale)

    def forget(self, fingerprint: str, job_id: str | None = None) -> None:
        """Drop the intent; with `job_id`, only if it is still that job's (not a newer one's)."""
        path = self._path(fingerprint)
        if job_id is not None:
            try:
                if json.loads(path.read_bytes()).get("job_id") != job_id:
                    return
            except (OSError, ValueError, AttributeError):
                return
        path.unlink(missing_ok=True)

    def _path(self, fingerprint: str) -> Path:
        return self.folder / f"{fingerprint}.json"


def adopt_uploads(journal: Journal, lock: Lockfile) -> bool:
    """Uploads a killed run finished but did not lock (their intents hold the asset id): into
    the lock's cache, their intents forgotten. True when the lock changed (write it then)."""
    changed = False
    for intent in journal.load().values():
        sha = intent.fingerprint.removeprefix("upload-")
        if sha != intent.fingerprint and intent.job_id and sha not in lock.uploads:
            lock.uploads[sha] = intent.job_id
            changed = True
    return changed


def covered(intent: Intent, lock: Lockfile) -> bool:
    """True when the lock holds this intent's result: the upload's or the training's very id,
    or, for a job, its item locked at that stage (`<stage fingerprint>[.<output>]`), or, for a
    caption, its item locked with captions."""
    key = intent.fingerprint
    kind, _, rest = key.partition("-")
    if kind == "upload" and rest:
        return intent.job_id is not None and lock.uploads.get(rest) == intent.job_id
    if kind == "train" and rest:
        return intent.job_id is not None and lock.trainings.get(rest) == intent.job_id
    entry = lock.items.get(intent.key)
    if entry is None:
        return False
    if kind == "caption" and rest:
        return entry.fingerprint == rest and all(r.caption is not None for r in entry.outputs)
    stage = key.partition(".")[0]
    return entry.fingerprint == stage or any(s.fingerprint == stage for s in entry.stages)
