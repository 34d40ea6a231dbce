"""assets.lock: what produced every output file. Owns the format and its reading and writing.

The promises (design.md): versioned; deterministic bytes (sorted keys, fixed indentation, no
timestamps), so a rerun with nothing to do leaves it byte-identical; one block per item, so two
branches that touch different items merge with plain git; written atomically (temp file beside it,
fsync, rename, fsync of the folder). Deciding what is stale is plan.py's job, not this module's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config

from pipeline.errors import LockfileError
from pipeline.files import write_atomic

LOCK_VERSION = 1


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


@with_config(_STRICT)
@dataclass(frozen=True, slots=True)
class LockEntry:
    """What produced one item's files: the fingerprint, the request it stands for, the outputs."""

    fingerprint: _Sha256
    request: dict[str, Any]
    seed_derived: bool = False
    outputs: tuple[OutputRecord, ...] = ()


@with_config(_STRICT)
@dataclass(frozen=True, slots=True)
class _Document:
    version: int
    items: dict[str, LockEntry] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)
    trainings: dict[str, str] = field(default_factory=dict)
    # Each entry's rendered block, reused while the entry is the same object: a run flushes the
    # lock every few hundred ms, and re-rendering thousands of unchanged entries each time costs.
    _blocks: dict[str, tuple[LockEntry, str]] = field(
        default_factory=dict, compare=False, repr=False
    )


# Stdlib dataclasses validated by pydantic-core: half the time of BaseModels on a large lock.
_DOCUMENT = TypeAdapter(_Document)


@dataclass
class Lockfile:
    """The lockfile in memory. `items` is keyed by `collection/item`."""

    items: dict[str, LockEntry] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)
    trainings: dict[str, str] = field(default_factory=dict)
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
    if b"\n<<<<<<< " in b"\n" + raw or b"\n>>>>>>> " in raw:
        raise LockfileError(
            str(path),
            "has unresolved git merge conflict markers",
            hint="resolve the conflict (or check out one side and rerun `pipeline run`)",
        )
    try:
        version = _peek_version(raw)
    except ValueError as exc:
        raise LockfileError(str(path), f"is not valid JSON ({exc})") from None
    except RecursionError:
        raise LockfileError(str(path), "is not a lockfile (JSON nested too deep)") from None
    if version > LOCK_VERSION:
        raise LockfileError(
            str(path),
            f"was written by a newer pipeline (lock version {version}, this one reads "
            f"{LOCK_VERSION})",
            hint="upgrade pipeline (pip install -U pipeline) before running it here",
        )
    try:
        doc = _DOCUMENT.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        count = exc.error_count()
        more = f" (and {count - 1} more)" if count > 1 else ""
        raise LockfileError(
            str(path),
            f"is malformed at {where}: {first['msg']}{more}",
            hint="restore it from git, or delete it and rerun `pipeline run`",
        ) from None
    return Lockfile(items=dict(doc.items), uploads=dict(doc.uploads), trainings=dict(doc.trainings))


def _peek_version(raw: bytes) -> int:
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
    blocks = []
    cache: dict[str, tuple[LockEntry, str]] = {}
    for key in sorted(lock.items):
        entry = lock.items[key]
        cached = lock._blocks.get(key)
        if cached is None or cached[0] is not entry:
            text = _dumps(_entry_json(entry)).replace("\n", "\n    ")
            cached = (entry, f"    {_dumps(key)}: {text}")
        cache[key] = cached
        blocks.append(cached[1])
    lock._blocks = cache
    items = "{\n" + ",\n".join(blocks) + "\n  }" if blocks else "{}"
    uploads = _dumps(lock.uploads).replace("\n", "\n  ")
    trainings = _dumps(lock.trainings).replace("\n", "\n  ")
    text = (
        f'{{\n  "items": {items},\n  "trainings": {trainings},\n'
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
        data["outputs"] = [
            {k: v for k, v in asdict(record).items() if not (k == "asset_id" and v is None)}
            for record in entry.outputs
        ]
    return data


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
