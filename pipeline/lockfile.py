"""assets.lock: what produced every output file. Owns the format and its reading and writing.

The promises (design.md): versioned; deterministic bytes (sorted keys, fixed indentation, no
timestamps), so a rerun with nothing to do leaves it byte-identical; one block per item, so two
branches that touch different items merge with plain git; written atomically (temp file beside it,
fsync, rename, fsync of the folder). Deciding what is stale is plan.py's job, not this module's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config

from pipeline.errors import LockfileError
from pipeline.files import write_atomic

LOCK_VERSION = 2  # 2: post-processing stages, captions, remote collections
MARKER_SIZE = 7  # git's default length of a conflict marker


def _inside_output(value: str) -> str:
    parts = value.split("/")
    if (
        not value
        or value.startswith("/")
        or "\\" in value
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ValueError(f"{value!r} is not a relative path inside the output folder")
    return value


_Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
_STRICT = ConfigDict(extra="forbid")


@with_config(_STRICT)
@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One file an item produced: where it is (relative to the output folder) and what it holds."""

    file: Annotated[str, AfterValidator(_inside_output)]
    sha256: _Sha256
    size: Annotated[int, Field(ge=0)]
    width: Annotated[int, Field(ge=1)]
    height: Annotated[int, Field(ge=1)]
    asset_id: str | None = None
    caption: str | None = None  # alt text from POST /generate/caption (`caption: true`)


@with_config(_STRICT)
@dataclass(frozen=True, slots=True)
class StageRecord:
    """An intermediate result of a `then:` chain: the generation, or a step before the last.

    `fingerprint` is the stage's own (chained on the one before); `asset_ids` its results, one
    per output, from which a changed later step starts again (empty on the local backend, which
    keeps no assets); `kept` the files a `keep: true` step wrote."""

    fingerprint: _Sha256
    asset_ids: tuple[str, ...] = ()
    kept: tuple[OutputRecord, ...] = ()


@with_config(_STRICT)
@dataclass(frozen=True, slots=True)
class LockEntry:
    """What produced one item's files: the fingerprint, the request it stands for, the outputs."""

    fingerprint: _Sha256
    request: dict[str, Any]
    seed_derived: bool = False
    outputs: tuple[OutputRecord, ...] = ()
    stages: tuple[StageRecord, ...] = ()  # a chain's stages before the last (its are `outputs`)
    remote_collection: str | None = None  # the Scenario collection its outputs were added to

    def files(self) -> tuple[OutputRecord, ...]:
        """Every file the item wrote: its outputs, then the kept intermediate results."""
        if not self.stages:
            return self.outputs
        return self.outputs + tuple(record for stage in self.stages for record in stage.kept)


@with_config(_STRICT)
@dataclass(frozen=True, slots=True)
class _Document:
    version: int
    items: dict[str, LockEntry] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)
    trainings: dict[str, str] = field(default_factory=dict)
    collections: dict[str, str] = field(default_factory=dict)


# Stdlib dataclasses validated by pydantic-core: half the time of BaseModels on a large lock.
_DOCUMENT = TypeAdapter(_Document)
_ENTRY = TypeAdapter(LockEntry)


@dataclass
class Lockfile:
    """The lockfile in memory. `items` is keyed by `collection/item`.

    The caches of what the API holds: `uploads` (a local file's sha256 -> its asset id),
    `trainings` (a training fingerprint -> the trained model's id) and `collections` (a local
    collection -> its Scenario collection's id). On the local backend, whose emulator lives for
    one run, trainings and collections are recorded with an empty id: done, nothing kept.
    """

    items: dict[str, LockEntry] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)
    trainings: dict[str, str] = field(default_factory=dict)
    collections: dict[str, str] = field(default_factory=dict)
    # Each entry's rendered block, reused while the entry is the same object: a run flushes the
    # lock every few hundred ms, and re-rendering thousands of unchanged entries each time costs.
    _blocks: dict[str, tuple[LockEntry, str]] = field(
        default_factory=dict, compare=False, repr=False
    )


def read_lock(path: Path) -> Lockfile:
    """Load the lockfile; a missing file is an empty lock. Anything unusable is a LockfileError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Lockfile()
    except OSError as exc:
        raise LockfileError(str(path), f"cannot be read: {exc.strerror}") from None
    return parse_lock(raw, str(path))


def parse_lock(raw: bytes, name: str) -> Lockfile:
    """A lockfile's bytes as a Lockfile; `name` is the file named by the LockfileError."""
    if (b"<<<<<<<" in raw or b">>>>>>>" in raw) and (conflicts := find_conflicts(raw)):
        located = "".join(f"\n  {name}:{line}: {', '.join(keys)}" for line, keys in conflicts)
        raise LockfileError(
            name,
            f"has unresolved git merge conflict markers{located}",
            hint="in each conflict keep one side and delete the other with the marker lines "
            "(`pipeline run` regenerates an item whose inputs no longer match); or set up the "
            "merge driver (`pipeline lock merge --help`) and redo this file's merge with it: "
            f"`git checkout -m {name}`",
        )
    try:
        version = _peek_version(raw)
    except ValueError as exc:
        raise LockfileError(name, f"is not valid JSON ({exc})") from None
    except RecursionError:
        raise LockfileError(name, "is not a lockfile (JSON nested too deep)") from None
    if version > LOCK_VERSION:
        raise LockfileError(
            name,
            f"was written by a newer pipeline (lock version {version}, this one reads "
            f"{LOCK_VERSION})",
            hint="upgrade pipeline (pip install -U pipeline) before running it here",
        )
    try:
        doc = _DOCUMENT.validate_json(raw)
    except ValidationError as exc:
        raise LockfileError(
            name,
            f"is malformed at {_first_problem(exc)}",
            hint="restore it from git, `pipeline lock rebuild` it from output/, or delete it "
            "and rerun `pipeline run`",
        ) from None
    return Lockfile(
        items=dict(doc.items),
        uploads=dict(doc.uploads),
        trainings=dict(doc.trainings),
        collections=dict(doc.collections),
    )


def parse_entry(data: Mapping[str, Any]) -> LockEntry:
    """One entry from its JSON form (as render_block writes it), checked as read_lock checks it.

    ValueError names the first problem and where it is (`outputs.0.sha256: ...`).
    """
    try:
        return _ENTRY.validate_json(json.dumps(data, ensure_ascii=False))
    except ValidationError as exc:
        raise ValueError(_first_problem(exc)) from None


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    count = exc.error_count()
    more = f" (and {count - 1} more)" if count > 1 else ""
    return f"{where}: {first['msg']}{more}"


_MARKER = re.compile(r"(<{7,}|\|{7,}|={7,}|>{7,})(?: .*)?")
_OPENER = re.compile(r'    ("(?:[^"\\]|\\.)*"): \{')
_CLOSER = re.compile(r"    \},?")
_SECTION = re.compile(r'  "(\w+)": .*')


def find_conflicts(raw: bytes) -> list[tuple[int, tuple[str, ...]]]:
    """Each git conflict in a lock's text: the line of its `<<<<<<<` marker (from 1) and what
    it is about: the keys of the items in it, or the section (`uploads`) when there are none.

    Read line by line on the lock's own layout: an item's block opens with its key at four
    spaces of indentation and closes at four. A conflict that starts inside a block is about
    that block's item too; each side of a conflict is read from the state before it, and after
    the conflict the text may be inside the block of any side's last item.
    """
    found: list[tuple[int, list[str], str]] = []
    current: list[str] = []  # the items whose block the text is in (several after a conflict)
    before: list[str] = []
    sides: list[str] = []
    section = ""
    inside = False
    for number, line in enumerate(raw.decode(errors="replace").split("\n"), 1):
        line = line.removesuffix("\r")
        if marker := _MARKER.fullmatch(line):
            kind = marker[1][0]
            if kind == "<":
                found.append((number, list(current), section or "lockfile"))
                before, sides, inside = current, [], True
            elif inside:
                sides += current
                current = before
                if kind == ">":
                    current, inside = list(dict.fromkeys(sides)), False
        elif opener := _OPENER.fullmatch(line):
            current = [_key(opener[1])]
            if inside:
                found[-1][1].extend(current)
        elif _CLOSER.fullmatch(line):
            current = []
        elif heading := _SECTION.fullmatch(line):
            section = heading[1]
    return [(number, tuple(dict.fromkeys(keys)) or (where,)) for number, keys, where in found]


def _key(quoted: str) -> str:
    try:
        key = json.loads(quoted)
    except ValueError:
        return quoted
    return key if isinstance(key, str) else quoted


def is_newer(raw: bytes) -> bool:
    """True when `raw` is a lock from a newer pipeline: not broken, only unreadable by this one."""
    try:
        return _peek_version(raw) > LOCK_VERSION
    except (ValueError, RecursionError):
        return False


_TAIL_VERSION = re.compile(rb'\n  "version": (\d+)\n\}\n?$')


def _peek_version(raw: bytes) -> int:
    """The lock's version: read off the last line as render_lock writes it (the whole document
    is parsed only when the tail is not that, e.g. a hand-edited lock)."""
    tail = _TAIL_VERSION.search(raw[-64:])
    if tail is not None and raw.lstrip()[:1] == b"{":
        return int(tail[1])
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("the top level is not an object")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError("no integer 'version' field")
    return version


def render_lock(lock: Lockfile) -> bytes:
    """The lockfile's exact bytes: the same lock always gives the same bytes.

    The same bytes as `json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)` of the
    whole document, built from one cached block per entry.
    """
    return _render(lock, {}, MARKER_SIZE)


def render_conflicted(
    lock: Lockfile,
    conflicts: Mapping[str, tuple[LockEntry, LockEntry]],
    *,
    marker_size: int = MARKER_SIZE,
) -> bytes:
    """The lock with each conflicted item's two blocks (ours, theirs) between git's markers.

    Each side is rendered as render_lock renders a block, with the comma that follows it in the
    document, so deleting one side and the three marker lines leaves the exact bytes render_lock
    writes for the lock with that side's entry.
    """
    return _render(lock, conflicts, marker_size)


def render_block(key: str, entry: LockEntry) -> str:
    """One item's block as it stands in the lock, indented, without the comma that may follow."""
    text = _dumps(_entry_json(entry)).replace("\n", "\n    ")
    return f"    {_dumps(key)}: {text}"


def _render(
    lock: Lockfile, conflicts: Mapping[str, tuple[LockEntry, LockEntry]], marker_size: int
) -> bytes:
    keys = sorted(lock.items.keys() | conflicts.keys()) if conflicts else sorted(lock.items)
    blocks = []
    entries, previous = lock.items, lock._blocks
    cache: dict[str, tuple[LockEntry, str]] = {}
    for key in keys:
        if key in conflicts:
            blocks.append("")  # rendered below
            continue
        entry = entries[key]
        cached = previous.get(key)
        if cached is None or cached[0] is not entry:
            cached = (entry, render_block(key, entry))
        cache[key] = cached
        blocks.append(cached[1])
    lock._blocks = cache
    if conflicts:
        for n, key in enumerate(keys):
            comma = "," if n < len(keys) - 1 else ""
            if key in conflicts:
                ours, theirs = (render_block(key, side) + comma for side in conflicts[key])
                blocks[n] = (
                    f"{'<' * marker_size} ours\n{ours}\n{'=' * marker_size}\n{theirs}\n"
                    f"{'>' * marker_size} theirs"
                )
            elif comma:
                blocks[n] += comma
        body = "\n".join(blocks)
    else:
        body = ",\n".join(blocks)
    items = "{\n" + body + "\n  }" if blocks else "{}"
    uploads = _dumps(lock.uploads).replace("\n", "\n  ")
    trainings = _dumps(lock.trainings).replace("\n", "\n  ")
    collections = ""
    if lock.collections:  # left out when empty: locks that use none read as version 1 did
        collections = (
            f'  "collections": {_dumps(lock.collections).replace(chr(10), chr(10) + "  ")},\n'
        )
    text = (
        f'{{\n{collections}  "items": {items},\n  "trainings": {trainings},\n'
        f'  "uploads": {uploads},\n  "version": {LOCK_VERSION}\n}}\n'
    )
    return text.encode()


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _entry_json(entry: LockEntry) -> dict[str, Any]:
    """An entry as JSON, leaving out fields at their defaults (so new fields add no noise)."""
    data: dict[str, Any] = {"fingerprint": entry.fingerprint, "request": entry.request}
    if entry.seed_derived:
        data["seed_derived"] = True
    if entry.outputs:
        data["outputs"] = [_record_json(record) for record in entry.outputs]
    if entry.stages:
        data["stages"] = [
            {
                "fingerprint": stage.fingerprint,
                **({"asset_ids": list(stage.asset_ids)} if stage.asset_ids else {}),
                **({"kept": [_record_json(r) for r in stage.kept]} if stage.kept else {}),
            }
            for stage in entry.stages
        ]
    if entry.remote_collection is not None:
        data["remote_collection"] = entry.remote_collection
    return data


def _record_json(record: OutputRecord) -> dict[str, Any]:
    return {k: v for k, v in asdict(record).items() if v is not None}


def write_lock(path: Path, lock: Lockfile) -> bool:
    """Write the lock atomically; returns False (and writes nothing) when the bytes are the same."""
    data = render_lock(lock)
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise LockfileError(str(path), f"cannot be read: {exc.strerror}") from None
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise LockfileError(
            str(path), f"cannot be written: {exc.strerror}", hint="the previous lock is intact"
        ) from None
    return True
