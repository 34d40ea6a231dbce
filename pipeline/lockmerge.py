"""The three-way merge of assets.lock that git's merge driver runs (`pipeline lock merge`).

Item by item, as git merges lines: a side that left an item as the base had it takes the other
side's version (a deletion included); the same change on both sides is taken once. Beyond what
git can do: an item deleted on one side and changed on the other keeps the change (a record of
a paid result is never lost: `pipeline plan` shows it as orphaned if the manifests dropped it);
an item regenerated on both sides from the same inputs (same fingerprint) keeps ours. Only an
item changed on both sides to different inputs is a conflict, and only that item's block is
marked. `uploads` and `trainings` are caches of what the API already holds: their union, ours
where both name the same key differently. Deciding is here; lockfile.py renders and reads the
markers, lockcmd.py prints. A side that is not a lockfile is merged as text by `git merge-file`.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import LockfileError
from pipeline.files import write_atomic
from pipeline.lockfile import (
    MARKER_SIZE,
    LockEntry,
    Lockfile,
    find_conflicts,
    parse_lock,
    render_conflicted,
    render_lock,
)
from pipeline.plan import differences

__all__ = ["Conflict", "Fallback", "Merge", "merge_files", "merge_locks"]


@dataclass(frozen=True)
class Conflict:
    """An item both sides changed to different inputs; `line` is its `<<<<<<<` in the file."""

    key: str
    ours: LockEntry
    theirs: LockEntry
    added: bool  # new on both sides, rather than changed from the base
    line: int = 0

    @property
    def differences(self) -> tuple[str, ...]:
        """The inputs the two sides disagree on (`prompt`, `params.guidance`, ...)."""
        return differences(self.ours.request, self.theirs.request) or ("recipe",)


@dataclass
class Merge:
    """What the merge made: the resolved lock, the conflicts left, and what it decided."""

    lock: Lockfile
    conflicts: list[Conflict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    from_ours: int = 0  # items whose change (or deletion) came from ours alone
    from_theirs: int = 0
    from_both: int = 0  # the same change on both sides


@dataclass(frozen=True)
class Fallback:
    """A side was not a lockfile this merge reads: merged as text instead, with `conflicts` left."""

    side: str
    reason: str
    conflicts: int


def merge_locks(base: Lockfile, ours: Lockfile, theirs: Lockfile) -> Merge:
    """The three-way merge of three locks, item by item (see the module docstring). Pure."""
    merged = Merge(Lockfile())
    for key in sorted(base.items.keys() | ours.items.keys() | theirs.items.keys()):
        entry = _merge_item(
            key, base.items.get(key), ours.items.get(key), theirs.items.get(key), merged
        )
        if entry is not None:
            merged.lock.items[key] = entry
    merged.lock.uploads = _union("uploads", ours.uploads, theirs.uploads, merged.notes)
    merged.lock.trainings = _union("trainings", ours.trainings, theirs.trainings, merged.notes)
    merged.lock.collections = _union(
        "collections", ours.collections, theirs.collections, merged.notes
    )
    return merged


def _merge_item(
    key: str,
    base: LockEntry | None,
    ours: LockEntry | None,
    theirs: LockEntry | None,
    merged: Merge,
) -> LockEntry | None:
    if ours == theirs:
        merged.from_both += ours != base
        return ours
    if theirs == base:
        merged.from_ours += 1
        return ours
    if ours == base:
        merged.from_theirs += 1
        return theirs
    if ours is None or theirs is None:
        kept, deleted = ("theirs", "ours") if ours is None else ("ours", "theirs")
        merged.notes.append(
            f"{key}: deleted on {deleted}, changed on {kept}: the change is kept "
            "(`pipeline plan` shows it as orphaned if the manifests dropped it)"
        )
        if ours is None:
            merged.from_theirs += 1
            return theirs
        merged.from_ours += 1
        return ours
    if ours.fingerprint == theirs.fingerprint:
        merged.notes.append(f"{key}: regenerated on both branches from the same inputs: ours kept")
        merged.from_both += 1
        return ours
    merged.conflicts.append(Conflict(key, ours, theirs, added=base is None))
    return None


def _union(
    name: str, ours: dict[str, str], theirs: dict[str, str], notes: list[str]
) -> dict[str, str]:
    for key in sorted(ours.keys() & theirs.keys()):
        if ours[key] != theirs[key]:
            notes.append(f"{name} {key}: {ours[key]} on ours, {theirs[key]} on theirs: ours kept")
    return {**theirs, **ours}


def merge_files(
    base: Path, ours: Path, theirs: Path, *, marker_size: int = MARKER_SIZE, name: str
) -> Merge | Fallback:
    """Merge git's three versions of the lock into `ours`, as a merge driver must.

    Conflicts are marked in the file and located (`line`); `name` is the lock's path in the
    repo, for messages. A side that is not a lockfile (invalid JSON, conflict markers, a newer
    version) gets a textual merge by `git merge-file` instead, which is always a conflict.
    """
    locks: list[Lockfile] = []
    for side, path in (("base", base), ("ours", ours), ("theirs", theirs)):
        raw = _read(path, name)
        if side == "base" and not raw.strip():
            locks.append(Lockfile())  # added on both branches: no common version
            continue
        try:
            locks.append(parse_lock(raw, f"{name} ({side})"))
        except LockfileError as exc:
            left = _merge_text(base, ours, theirs, marker_size, name)
            return Fallback(side, exc.reason, left)
    merged = merge_locks(*locks)
    if not merged.conflicts:
        _write(ours, render_lock(merged.lock), name)
        return merged
    data = render_conflicted(
        merged.lock, {c.key: (c.ours, c.theirs) for c in merged.conflicts}, marker_size=marker_size
    )
    _write(ours, data, name)
    lines = {keys[0]: line for line, keys in find_conflicts(data)}
    merged.conflicts = [
        Conflict(c.key, c.ours, c.theirs, c.added, lines.get(c.key, 0)) for c in merged.conflicts
    ]
    return merged


def _read(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LockfileError(f"{name} ({path})", f"cannot be read: {exc.strerror}") from None


def _write(path: Path, data: bytes, name: str) -> None:
    try:
        write_atomic(path, data, durable=False)  # git's own temp file: the merge can be redone
    except OSError as exc:
        raise LockfileError(f"{name} ({path})", f"cannot be written: {exc.strerror}") from None


def _merge_text(base: Path, ours: Path, theirs: Path, marker_size: int, name: str) -> int:
    """`git merge-file` into `ours`, markers labelled ours/base/theirs; the conflicts left."""
    command = ["git", "merge-file", "-q", f"--marker-size={marker_size}"]
    command += ["-L", "ours", "-L", "base", "-L", "theirs", str(ours), str(base), str(theirs)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise LockfileError(name, f"cannot be merged as text: git: {exc.strerror}") from None
    if done.returncode < 0 or done.returncode > 127:
        raise LockfileError(name, f"cannot be merged as text: {done.stderr.strip()}")
    return done.returncode
