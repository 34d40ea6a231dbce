"""Fingerprints, and the diff of the manifests against assets.lock and the files on disk. Pure.

An item's fingerprint is sha256 over the canonical JSON (sorted keys, no spaces, UTF-8) of exactly
what decides its pixels, `request_of()`:
    recipe            RECIPE_VERSION, bumped when the meaning of a key changes
    backend           `local` or `scenario`: placeholders are redone once credentials appear
    model             the model id in POST /generate/custom/{model}
    loras             trained model ids (and scales) applied
    prompt, negative_prompt, seed, width, height, outputs
    params            every other model input, verbatim
Absent optional inputs are left out rather than written as null, so adding an optional input to
the format does not change existing fingerprints. Not in it: the collection name, the item's file,
its position, comments, key order, YAML formatting: moving or renaming an item costs nothing.

Plan states: new, changed (which inputs differ), missing (lock current but a file is gone or
altered: size first, then the stat cache, then the content hash), unchanged, orphaned (locked, gone
from the manifests). An item renamed or moved to another collection is found by its fingerprint
among the orphans and planned as `missing`, to be restored from the old file or asset: no new
generation. Reading files is all this module does; it never writes and never calls the API.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidInput, Location, Problem
from pipeline.lockfile import LockEntry, Lockfile, OutputRecord
from pipeline.manifest import Item
from pipeline.state import StatCache

RECIPE_VERSION = 1
_HASH_CHUNK = 1 << 20


class State(StrEnum):
    NEW = "new"
    CHANGED = "changed"
    MISSING = "missing"
    UNCHANGED = "unchanged"
    ORPHANED = "orphaned"


PENDING = frozenset({State.NEW, State.CHANGED, State.MISSING})


@dataclass(frozen=True)
class PlanEntry:
    """What `run` would do for one item, and why."""

    key: str
    state: State
    reasons: tuple[str, ...] = ()
    item: Item | None = None  # None for orphans
    request: Mapping[str, Any] | None = None
    fingerprint: str | None = None
    locked: LockEntry | None = None  # the lock entry this item matches (for moved: the old one)
    moved_from: str | None = None


@dataclass(frozen=True)
class Plan:
    """Every selected item's entry, in manifest order, then the orphans in key order."""

    entries: tuple[PlanEntry, ...]
    backend: str
    hashed: Mapping[str, tuple[os.stat_result, str]] = field(default_factory=dict)

    def count(self, state: State) -> int:
        return sum(1 for entry in self.entries if entry.state is state)

    @property
    def pending(self) -> list[PlanEntry]:
        return [entry for entry in self.entries if entry.state in PENDING]


def request_of(item: Item, backend: str) -> dict[str, Any]:
    """The canonical description of what decides an item's pixels (see the module docstring)."""
    request: dict[str, Any] = {
        "backend": backend,
        "model": item.model,
        "prompt": item.prompt,
        "seed": item.seed,
        "outputs": item.outputs,
    }
    if item.loras:
        request["loras"] = [
            lora.model if lora.scale is None else {"model": lora.model, "scale": lora.scale}
            for lora in item.loras
        ]
    optional = {
        "negative_prompt": item.negative_prompt,
        "width": item.width,
        "height": item.height,
    }
    request.update({name: value for name, value in optional.items() if value is not None})
    if item.params:
        request["params"] = dict(item.params)
    return request


def fingerprint_of(request: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the request and the recipe version."""
    canonical = json.dumps(
        {"recipe": RECIPE_VERSION, **request},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def make_plan(
    items: Sequence[Item],
    lock: Lockfile,
    *,
    backend: str,
    output_dir: Path,
    stat_cache: StatCache,
    collections: Iterable[str] | None = None,
    select: Sequence[str] = (),
    output_label: str = "output",
) -> Plan:
    """Classify every item, and every orphaned lock entry.

    `collections` limits the orphans to those collections, for when only some manifests were
    loaded; None (all manifests loaded) makes every locked item missing from `items` an orphan.
    """
    _check_file_names(items)
    loaded = None if collections is None else set(collections)
    current = {item.key for item in items}
    orphans = _Orphans(
        {
            key: entry
            for key, entry in lock.items.items()
            if key not in current and (loaded is None or key.partition("/")[0] in loaded)
        }
    )
    hashed: dict[str, tuple[os.stat_result, str]] = {}
    files = _Files(output_dir, output_label, stat_cache, hashed)
    entries = [_classify(item, lock, orphans, backend, files) for item in items]
    entries += [
        PlanEntry(key, State.ORPHANED, ("no longer in the manifests",), locked=entry)
        for key, entry in sorted(orphans.entries.items())
    ]
    if select:
        entries = _select(entries, select)
    return Plan(tuple(entries), backend, hashed)


def _classify(
    item: Item,
    lock: Lockfile,
    orphans: _Orphans,
    backend: str,
    files: _Files,
) -> PlanEntry:
    locked = lock.items.get(item.key)
    if locked is None:
        moved = orphans.claim(item, backend)
        if moved is None:
            request = request_of(item, backend)
            return PlanEntry(item.key, State.NEW, (), item, request, fingerprint_of(request))
        old_key, locked, item = moved
        request = request_of(item, backend)
        return PlanEntry(
            item.key,
            State.MISSING,
            (f"moved from {old_key}",),
            item,
            request,
            locked.fingerprint,
            locked,
            moved_from=old_key,
        )
    if item.seed_derived and locked.seed_derived and item.seed != locked.request.get("seed"):
        # A derived seed depends on the collection name; keep the one already paid for.
        item = replace(item, seed=locked.request["seed"])
    request = request_of(item, backend)
    fingerprint = fingerprint_of(request)
    if fingerprint != locked.fingerprint:
        reasons = differences(locked.request, request) or ("recipe",)
        return PlanEntry(item.key, State.CHANGED, reasons, item, request, fingerprint, locked)
    problems = files.check(locked)
    state = State.MISSING if problems else State.UNCHANGED
    return PlanEntry(item.key, state, tuple(problems), item, request, fingerprint, locked)


class _Orphans:
    """Locked entries gone from the manifests, indexed to find renamed or moved items quickly."""

    def __init__(self, entries: dict[str, LockEntry]) -> None:
        self.entries = entries
        self._by_fingerprint = {entry.fingerprint: key for key, entry in entries.items()}
        self._derived_by_id: dict[str, list[str]] = {}
        for key, entry in entries.items():
            if entry.seed_derived:
                self._derived_by_id.setdefault(key.partition("/")[2], []).append(key)

    def claim(self, item: Item, backend: str) -> tuple[str, LockEntry, Item] | None:
        """The orphan this new item was moved from, removed from the orphans; None if none.

        A match is the same fingerprint or, for a derived seed (which depends on the collection
        name), the same id and request but the seed: that seed is then kept, not paid for again.
        """
        found = self._by_fingerprint.get(fingerprint_of(request_of(item, backend)))
        if found is None and item.seed_derived:
            for key in self._derived_by_id.get(item.id, ()):
                entry = self.entries.get(key)
                if entry is None:
                    continue
                adopted = replace(item, seed=entry.request.get("seed", item.seed))
                if fingerprint_of(request_of(adopted, backend)) == entry.fingerprint:
                    found, item = key, adopted
                    break
        if found is None or found not in self.entries:
            return None
        return found, self.entries.pop(found), item


def _check_file_names(items: Sequence[Item]) -> None:
    """Two items must never write the same file (`a` with 2 outputs writes `a_1`, as does `a_1`).

    Compared case-insensitively: the files land on case-insensitive file systems too.
    """
    owners: dict[str, Item] = {}
    problems = []
    for item in items:
        stems = (
            [item.id]
            if item.outputs == 1
            else [f"{item.id}_{n}" for n in range(1, item.outputs + 1)]
        )
        for stem in stems:
            name = f"{item.collection}/{stem}".casefold()
            other = owners.setdefault(name, item)
            if other is not item:
                problems.append(
                    Problem(
                        item.locate("id"),
                        f"{item.key} would write {item.collection}/{stem}.png, as does "
                        f"{other.key} ({other.locate('id')}); rename one",
                    )
                )
                break
    if problems:
        raise InvalidInput(problems)


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    """Names of the inputs that differ; params are named one by one (`params.guidance`)."""
    reasons: list[str] = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if name == "params" and isinstance(before, dict | None) and isinstance(after, dict | None):
            before, after = before or {}, after or {}
            reasons += [
                f"params.{key}"
                for key in sorted(set(before) | set(after))
                if before.get(key) != after.get(key)
            ]
        else:
            reasons.append(name)
    return tuple(reasons)


@dataclass
class _Files:
    """Checks locked outputs on disk: size first, then the stat cache, then the content hash."""

    output_dir: Path
    label: str
    stat_cache: StatCache
    hashed: dict[str, tuple[os.stat_result, str]]

    def check(self, locked: LockEntry) -> list[str]:
        """Why the locked files are not all present and intact (empty when they are)."""
        return [reason for record in locked.outputs if (reason := self._check(record))]

    def _check(self, record: OutputRecord) -> str:
        # os.path on strings, not pathlib: this runs for every file on every no-op plan.
        path = os.path.join(self.output_dir, record.file)
        shown = f"{self.label}/{record.file}"
        try:
            stat = os.stat(path)
            if stat.st_size != record.size:
                return f"{shown} was altered (size {stat.st_size}, locked {record.size})"
            if self.stat_cache.vouches(record.file, stat, record.sha256):
                return ""
            digest = hash_file(path)
        except FileNotFoundError:
            return f"{shown} is gone"
        except OSError as exc:
            return f"{shown} cannot be read ({exc.strerror})"
        self.hashed[record.file] = (stat, digest)
        if digest != record.sha256:
            return f"{shown} was altered (content differs from the lock)"
        return ""


def hash_file(path: str | Path) -> str:
    """sha256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _select(entries: list[PlanEntry], patterns: Sequence[str]) -> list[PlanEntry]:
    """Keep entries whose `collection` or `collection/item` matches a pattern (globs allowed)."""
    problems = []
    kept: dict[str, PlanEntry] = {}
    for pattern in patterns:
        matched = [
            entry
            for entry in entries
            if fnmatch.fnmatchcase(entry.key, pattern)
            or fnmatch.fnmatchcase(entry.key.partition("/")[0], pattern)
        ]
        if not matched:
            problems.append(
                Problem(
                    Location("command line", path="SELECT"),
                    f"{pattern!r} matches no collection or item "
                    "(write `collection` or `collection/item`; globs allowed)",
                )
            )
        kept.update((entry.key, entry) for entry in matched)
    if problems:
        raise InvalidInput(problems)
    return [entry for entry in entries if entry.key in kept]
