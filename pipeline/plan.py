"""Fingerprints, and the diff of the manifests against assets.lock and the files on disk. Pure.

An item's fingerprint is sha256 over the canonical JSON (sorted keys, no spaces, UTF-8) of exactly
what decides its pixels, `request_of()`:
    recipe            RECIPE_VERSION, bumped when the meaning of a key changes
    backend           `local` or `scenario`: placeholders are redone once credentials appear
    model             the model id in POST /generate/custom/{model}
    loras             trained model ids (and scales) applied
    prompt, negative_prompt, seed, width, height, outputs
    params            every other model input, verbatim
    image, strength, referenceImages   the sha256 of each local input file (never its path)
A LoRA trained from the manifests (`lora: <training name>`) is `{"training": <its fingerprint>}`:
the training images' hashes, the model type, the preset and the parameters, so retraining
regenerates what uses it. A `then:` chain gives every stage its own fingerprint, chained on the one
before ({after, backend, model, params}); the item's fingerprint is the last stage's, and a
changed step reruns from the last stage still locked (its asset ids), not from the start.
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
from pipeline.manifest import Collection, Item, Lora, Training
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
    stages: tuple[str, ...] = ()  # every stage's fingerprint: the generation, then each step
    resume: int = 0  # stages already made (locked, theirs or another item's): a run starts after
    reuse: tuple[tuple[str, ...], ...] = ()  # the asset ids of each of those stages
    reused_captions: tuple[str | None, ...] = ()  # another item's final outputs' captions


@dataclass(frozen=True)
class TrainingEntry:
    """A `train:` entry: `new` until the lock has its fingerprint, then `unchanged`."""

    name: str
    state: State
    training: Training
    fingerprint: str
    model_id: str | None  # the locked model ("" on the local backend), None when not trained
    users: tuple[str, ...] = ()  # the items (selected) that use it


@dataclass(frozen=True)
class CollectionSync:
    """A collection kept in step with a Scenario collection (`remote_collection: true`)."""

    name: str
    remote_id: str | None  # None until created
    to_add: tuple[str, ...]  # items whose outputs are not in it yet


@dataclass(frozen=True)
class Plan:
    """Every selected item's entry, in manifest order, then the orphans in key order."""

    entries: tuple[PlanEntry, ...]
    backend: str
    hashed: Mapping[str, tuple[os.stat_result, str]] = field(default_factory=dict)
    trainings: tuple[TrainingEntry, ...] = ()
    collections: tuple[CollectionSync, ...] = ()

    def count(self, state: State) -> int:
        return sum(1 for entry in self.entries if entry.state is state)

    @property
    def pending(self) -> list[PlanEntry]:
        return [entry for entry in self.entries if entry.state in PENDING]

    @property
    def new_trainings(self) -> list[TrainingEntry]:
        return [training for training in self.trainings if training.state is State.NEW]

    @property
    def out_of_step(self) -> list[CollectionSync]:
        """Remote collections to create, or to add outputs to."""
        return [sync for sync in self.collections if sync.to_add or sync.remote_id is None]

    @property
    def has_work(self) -> bool:
        """True when a run would do anything: items, trainings, remote collections."""
        return bool(self.pending or self.new_trainings or self.out_of_step)


def training_fingerprint(training: Training, backend: str) -> str:
    """What decides a trained model: its images' content (in any order), type, preset, params."""
    return fingerprint_of(
        {
            "training": {
                "backend": backend,
                "type": training.type,
                "preset": training.preset,
                "params": dict(training.params),
                "images": sorted({image.sha256 for image in training.images}),
            }
        }
    )


def stage_fingerprints(item: Item, request: Mapping[str, Any]) -> tuple[str, ...]:
    """The fingerprint of each stage: the generation's (the request's), then each step's."""
    stages = [fingerprint_of(request)]
    for step in item.steps:
        after = {"after": stages[-1], "backend": request["backend"], "model": step.model}
        stages.append(fingerprint_of({**after, "params": dict(step.params)}))
    return tuple(stages)


def locked_request(item: Item, request: dict[str, Any]) -> dict[str, Any]:
    """The request the lock records: the generation's, and the chain's steps when there are."""
    if not item.steps:
        return request
    steps = [{"model": step.model, "params": dict(step.params)} for step in item.steps]
    return {**request, "then": steps}


def request_of(
    item: Item, backend: str, trainings: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The canonical description of what decides an item's generation (module docstring).

    `trainings`: the fingerprint of each training a LoRA may name."""
    request: dict[str, Any] = {
        "backend": backend,
        "model": item.model,
        "prompt": item.prompt,
        "seed": item.seed,
        "outputs": item.outputs,
    }
    if item.loras:
        request["loras"] = [_lora_request(lora, trainings) for lora in item.loras]
    optional = {
        "negative_prompt": item.negative_prompt,
        "width": item.width,
        "height": item.height,
    }
    request.update({name: value for name, value in optional.items() if value is not None})
    if item.params:
        request["params"] = dict(item.params)
    if item.image is not None:
        request["image"] = item.image.sha256
    if item.strength is not None:
        request["strength"] = item.strength
    if item.reference_images:
        request["referenceImages"] = [file.sha256 for file in item.reference_images]
    return request


def _lora_request(lora: Lora, trainings: Mapping[str, str] | None) -> Any:
    if lora.training is not None:
        trained = {"training": (trainings or {}).get(lora.training, lora.training)}
        return trained if lora.scale is None else {**trained, "scale": lora.scale}
    return lora.model if lora.scale is None else {"model": lora.model, "scale": lora.scale}


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
    trainings: Sequence[Training] = (),
    remote: Iterable[str] = (),
) -> Plan:
    """Classify every item, and every orphaned lock entry; list trainings and remote collections.

    `collections` limits the orphans to those collections, for when only some manifests were
    loaded; None (all manifests loaded) makes every locked item missing from `items` an orphan.
    `remote`: the collections kept in step with a Scenario collection.
    """
    _check_file_names(items)
    fps = {training.name: training_fingerprint(training, backend) for training in trainings}
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
    results = _Results(lock)
    entries = [_classify(item, lock, orphans, backend, files, fps, results) for item in items]
    entries += [
        PlanEntry(key, State.ORPHANED, ("no longer in the manifests",), locked=entry)
        for key, entry in sorted(orphans.entries.items())
    ]
    if select:
        entries = _select(entries, select)
    users: dict[str, list[str]] = {}
    for entry in entries:
        for lora in entry.item.loras if entry.item else ():
            if lora.training is not None:
                users.setdefault(lora.training, []).append(entry.key)
    planned = tuple(
        TrainingEntry(
            training.name,
            State.UNCHANGED if fps[training.name] in lock.trainings else State.NEW,
            training,
            fps[training.name],
            lock.trainings.get(fps[training.name]),
            tuple(users.get(training.name, ())),
        )
        for training in trainings
        if not select or training.name in users
    )
    return Plan(tuple(entries), backend, hashed, planned, _syncs(entries, lock, set(remote)))


def plan_collections(
    collections: Sequence[Collection],
    lock: Lockfile,
    *,
    backend: str,
    output_dir: Path,
    stat_cache: StatCache,
    remote_default: bool = False,
    select: Sequence[str] = (),
    output_label: str = "output",
) -> Plan:
    """`make_plan` of loaded manifests: their items, trainings and remote collections (a
    manifest's `remote_collection:`, else `remote_default`, pipeline.yaml's)."""
    return make_plan(
        [item for collection in collections for item in collection.items],
        lock,
        backend=backend,
        output_dir=output_dir,
        stat_cache=stat_cache,
        select=select,
        output_label=output_label,
        trainings=[training for collection in collections for training in collection.trainings],
        remote=[
            collection.name
            for collection in collections
            if (remote_default if collection.remote is None else collection.remote)
        ],
    )


def _syncs(
    entries: Sequence[PlanEntry], lock: Lockfile, remote: set[str]
) -> tuple[CollectionSync, ...]:
    by_collection: dict[str, list[PlanEntry]] = {}
    for entry in entries:
        if entry.item is not None and entry.item.collection in remote:
            by_collection.setdefault(entry.item.collection, []).append(entry)
    syncs = []
    for name, members in sorted(by_collection.items()):
        remote_id = lock.collections.get(name)
        to_add = tuple(
            entry.key
            for entry in members
            if entry.locked is None
            or entry.state is not State.UNCHANGED
            or remote_id is None
            or entry.locked.remote_collection != remote_id
        )
        syncs.append(CollectionSync(name, remote_id, to_add))
    return tuple(syncs)


def _classify(
    item: Item,
    lock: Lockfile,
    orphans: _Orphans,
    backend: str,
    files: _Files,
    trainings: Mapping[str, str],
    results: _Results,
) -> PlanEntry:
    locked = lock.items.get(item.key)
    if locked is None:
        moved = orphans.claim(item, backend, trainings)
        request = request_of(moved[2] if moved else item, backend, trainings)
        if moved is None:
            stages = stage_fingerprints(item, request)
            resume, reuse, source = results.reuse(stages, None, item.outputs)
            why = (f"the same as {source}: its results are reused",) if source else ()
            captions = results.captions(source, reuse[-1]) if resume == len(stages) else ()
            return PlanEntry(
                item.key, State.NEW, why, item, locked_request(item, request), stages[-1],
                stages=stages, resume=resume, reuse=reuse, reused_captions=captions,
            )  # fmt: skip
        old_key, locked, item = moved
        stages = stage_fingerprints(item, request)
        resume, reuse, _ = results.reuse(stages, locked, item.outputs)
        return PlanEntry(
            item.key,
            State.MISSING,
            (f"moved from {old_key}",),
            item,
            locked_request(item, request),
            locked.fingerprint,
            locked,
            moved_from=old_key,
            stages=stages,
            resume=resume,
            reuse=reuse,
        )
    if item.seed_derived and locked.seed_derived and item.seed != locked.request.get("seed"):
        # A derived seed depends on the collection name; keep the one already paid for.
        item = replace(item, seed=locked.request["seed"])
    request = request_of(item, backend, trainings)
    stages = stage_fingerprints(item, request)
    fingerprint = stages[-1]
    record = locked_request(item, request)
    if fingerprint != locked.fingerprint:
        reasons = differences(locked.request, record) or ("recipe",)
        resume, reuse, source = results.reuse(stages, locked, item.outputs)
        captions = results.captions(source, reuse[-1]) if resume == len(stages) else ()
        return PlanEntry(
            item.key, State.CHANGED, reasons, item, record, fingerprint, locked, stages=stages,
            resume=resume, reuse=reuse, reused_captions=captions,
        )  # fmt: skip
    if not item.steps and not locked.stages:  # the common case, kept cheap
        problems = files.check(locked.outputs)
        changes: list[str] = []
    else:
        problems = files.check(_wanted(item, locked)) + _unkept(item, locked, files.label)
        changes = _unwanted(item, locked)
    if not problems and item.caption and any(r.caption is None for r in locked.outputs):
        changes.append("caption")
    if not problems and not changes:
        return PlanEntry(
            item.key, State.UNCHANGED, (), item, record, fingerprint, locked, stages=stages,
            resume=len(stages),
        )  # fmt: skip
    resume, reuse, _ = results.reuse(stages, locked, item.outputs)
    state = State.MISSING if problems else State.CHANGED
    return PlanEntry(
        item.key, state, tuple(problems or changes), item, record, fingerprint, locked,
        stages=stages, resume=resume, reuse=reuse,
    )  # fmt: skip


class _Results:
    """What the lock holds by stage fingerprint, every item's, for a run to start from: a
    changed step starts from its item's earlier stage, and a stage another item already made
    (an item added with the same generation, say) is never paid for again. Built on first use:
    a plan with nothing pending never needs it."""

    def __init__(self, lock: Lockfile) -> None:
        self.lock = lock
        self._index: dict[str, tuple[str, tuple[str, ...]]] | None = None

    def captions(self, source: str | None, ids: Sequence[str]) -> tuple[str | None, ...]:
        """The captions of `source`'s final outputs when they are these very assets."""
        entry = self.lock.items.get(source) if source else None
        if entry is None or [r.asset_id for r in entry.outputs] != list(ids):
            return ()
        return tuple(record.caption for record in entry.outputs)

    def _known(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        if self._index is None:
            self._index = {}
            for key, entry in sorted(self.lock.items.items()):
                for stage in entry.stages:
                    if stage.asset_ids and all(stage.asset_ids):
                        self._index.setdefault(stage.fingerprint, (key, stage.asset_ids))
                ids = tuple(record.asset_id or "" for record in entry.outputs)
                if ids and all(ids):
                    self._index.setdefault(entry.fingerprint, (key, ids))
        return self._index

    def reuse(
        self, stages: Sequence[str], locked: LockEntry | None, outputs: int
    ) -> tuple[int, tuple[tuple[str, ...], ...], str | None]:
        """How many leading stages are already made (a run starts after them), each one's asset
        ids, and the other item they come from (None: the item's own lock, or nothing)."""
        own: dict[str, tuple[str, ...]] = {}
        if locked is not None:
            own = {stage.fingerprint: stage.asset_ids for stage in locked.stages}
            own[locked.fingerprint] = tuple(r.asset_id or "" for r in locked.outputs)
        known = self._known()
        for k in range(len(stages) - 1, -1, -1):  # the latest stage made wins
            ids = own.get(stages[k])
            source = None
            if not ids or len(ids) != outputs or not all(ids):
                found = known.get(stages[k])
                if found is None or len(found[1]) != outputs:
                    continue
                source, ids = found
            reuse = tuple(own.get(fp) or known.get(fp, ("", ()))[1] for fp in stages[:k])
            return k + 1, (*reuse, ids), source
        return 0, (), None


def _wanted(item: Item, locked: LockEntry) -> tuple[OutputRecord, ...]:
    """The files the item should have: its outputs, and the results of its `keep: true` steps."""
    kept = tuple(
        record
        for k, stage in enumerate(locked.stages)
        if 0 < k <= len(item.steps) and item.steps[k - 1].keep
        for record in stage.kept
    )
    return locked.outputs + kept


def _unwanted(item: Item, locked: LockEntry) -> list[str]:
    """The kept results of steps that no longer say `keep: true` (their files are to go)."""
    return [
        f"then[{k - 1}] result no longer kept"
        for k, stage in enumerate(locked.stages)
        if stage.kept and not (0 < k <= len(item.steps) and item.steps[k - 1].keep)
    ]


def _unkept(item: Item, locked: LockEntry, label: str) -> list[str]:
    """The `keep: true` results the lock has no file for yet (the files are checked with the
    outputs)."""
    reasons = []
    for k, step in enumerate(item.steps[:-1]):
        stage = locked.stages[k + 1] if k + 1 < len(locked.stages) else None
        if step.keep and (stage is None or len(stage.kept) != item.outputs):
            reasons.append(f"then[{k}] ({step.name}) result is not in {label}/ yet (keep: true)")
    return reasons


class _Orphans:
    """Locked entries gone from the manifests, indexed to find renamed or moved items quickly."""

    def __init__(self, entries: dict[str, LockEntry]) -> None:
        self.entries = entries
        self._by_fingerprint = {entry.fingerprint: key for key, entry in entries.items()}
        self._derived_by_id: dict[str, list[str]] = {}
        for key, entry in entries.items():
            if entry.seed_derived:
                self._derived_by_id.setdefault(key.partition("/")[2], []).append(key)

    def claim(
        self, item: Item, backend: str, trainings: Mapping[str, str]
    ) -> tuple[str, LockEntry, Item] | None:
        """The orphan this new item was moved from, removed from the orphans; None if none.

        A match is the same fingerprint or, for a derived seed (which depends on the collection
        name), the same id and request but the seed: that seed is then kept, not paid for again.
        """

        def fingerprint(item: Item) -> str:
            return stage_fingerprints(item, request_of(item, backend, trainings))[-1]

        found = self._by_fingerprint.get(fingerprint(item))
        if found is None and item.seed_derived:
            for key in self._derived_by_id.get(item.id, ()):
                entry = self.entries.get(key)
                if entry is None:
                    continue
                adopted = replace(item, seed=entry.request.get("seed", item.seed))
                if fingerprint(adopted) == entry.fingerprint:
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
        if name == "then" and isinstance(before, list | None) and isinstance(after, list | None):
            before, after = before or [], after or []
            for k in range(max(len(before), len(after))):
                was = before[k] if k < len(before) else None
                now = after[k] if k < len(after) else None
                if was != now:
                    if isinstance(was, dict) and isinstance(now, dict):
                        reasons += [f"then[{k}].{reason}" for reason in differences(was, now)]
                    else:
                        reasons.append(f"then[{k}]")
        elif (
            name == "params" and isinstance(before, dict | None) and isinstance(after, dict | None)
        ):
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

    def check(self, records: Sequence[OutputRecord]) -> list[str]:
        """Why these locked files are not all present and intact (empty when they are)."""
        return [reason for record in records if (reason := self._check(record))]

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
