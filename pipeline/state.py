"""Volatile state under `.pipeline/`: caches and run bookkeeping that never belong in the lockfile.

The repo lock: one writer (`run`, `prune`) per repo at a time, an OS file lock that dies with its
process, so a crashed run never holds it. The stat cache: lets `plan` trust an output file without
hashing it when its size and mtime are the ones seen when it was last hashed (as Ninja and Godot
do). Only a cache: a lost one costs a re-hash, never a wrong answer, as the lock keeps the hash.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pipeline.errors import RepoBusy, WriteError
from pipeline.files import write_atomic

STATE_DIR = ".pipeline"
_REPO_LOCK = "run.lock"
_STAT_CACHE = "stat-cache.json"
_STAT_CACHE_VERSION = 1


@dataclass
class StatCache:
    """Output file (relative to the output folder) -> (size, mtime_ns, sha256) when last hashed."""

    entries: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    changed: bool = False

    @classmethod
    def load(cls, state_dir: Path) -> StatCache:
        """Read the cache; anything unreadable gives an empty cache (files get re-hashed)."""
        try:
            data = json.loads((state_dir / _STAT_CACHE).read_bytes())
            if data.get("version") != _STAT_CACHE_VERSION:
                return cls()
            entries = {
                str(name): (int(size), int(mtime), str(sha))
                for name, (size, mtime, sha) in data["entries"].items()
            }
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return cls()
        return cls(entries)

    def vouches(self, name: str, stat: os.stat_result, sha256: str) -> bool:
        """True when the file is as it was when it hashed to `sha256`."""
        return self.entries.get(name) == (stat.st_size, stat.st_mtime_ns, sha256)

    def remember(self, name: str, stat: os.stat_result, sha256: str) -> None:
        """Record a file's stat after hashing it."""
        value = (stat.st_size, stat.st_mtime_ns, sha256)
        if self.entries.get(name) != value:
            self.entries[name] = value
            self.changed = True

    def save(self, state_dir: Path) -> bool:
        """Write the cache if anything was remembered since it was loaded; False if it cannot be.

        Only a cache: a disk that refuses it costs the next plan some hashing, never a run.
        """
        if not self.changed:
            return True
        doc = {"version": _STAT_CACHE_VERSION, "entries": dict(sorted(self.entries.items()))}
        try:
            write_atomic(state_dir / _STAT_CACHE, json.dumps(doc, separators=(",", ":")).encode())
        except OSError:
            return False
        self.changed = False
        return True


class RepoLock:
    """Held for the whole of a run: a second run in the same repo is refused, not interleaved."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / _REPO_LOCK
        self._handle: IO[str] | None = None

    def __enter__(self) -> RepoLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+")
        except OSError as exc:
            raise WriteError(exc) from None
        try:
            _lock_file(handle)
        except OSError:
            holder = _holder(handle)
            handle.close()
            raise RepoBusy(holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the lock
            self._handle = None


def _holder(handle: IO[str]) -> str:
    """Who holds the lock, as it wrote itself down; a holder that has just taken the lock may
    not have written its pid yet, so an empty file is read once more a moment later."""
    for pause in (0.0, 0.05, 0.2):
        time.sleep(pause)
        handle.seek(0)
        holder = handle.read().strip()
        if holder:
            return holder
    return "unknown process"


def _lock_file(handle: IO[str]) -> None:
    """Take an exclusive, non-blocking lock on an open file; OSError when someone holds it."""
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
