"""Volatile state under `.pipeline/`: caches and run bookkeeping that never belong in the lockfile.

Today: the stat cache, which lets `plan` trust an output file without hashing it when its size and
mtime are the ones seen when it was last hashed (Ninja and Godot do the same). It is only a cache:
a missing or unreadable one costs a re-hash, never a wrong answer, because the lock keeps the hash.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.files import write_atomic

STATE_DIR = ".pipeline"
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

    def save(self, state_dir: Path) -> None:
        """Write the cache if anything was remembered since it was loaded."""
        if not self.changed:
            return
        doc = {"version": _STAT_CACHE_VERSION, "entries": dict(sorted(self.entries.items()))}
        write_atomic(state_dir / _STAT_CACHE, json.dumps(doc, separators=(",", ":")).encode())
        self.changed = False
