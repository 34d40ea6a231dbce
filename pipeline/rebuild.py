"""`pipeline lock rebuild`: remake a lost or broken assets.lock from output/. No API call.

Each collection's index.json carries, per item, all of its lock entry (index.py). An item is
rebuilt only when every file it lists is on disk with the recorded size and sha256, or is gone but
has an asset id (then `run` restores it for free: leaving it out would make the item `new`, paid
again), so what is rebuilt is exactly what the lock had; an altered file is reported, never
guessed at.
A readable old lock stays the authority: rebuilding only adds the items it lacks. Its entries the
rebuild could not recover are kept (their files may still be restored by asset id: a record of a
paid result is never dropped), and so are entries output/ contradicts (after a `git pull` the lock
is newer than the untracked files beside it; putting the older record back could pay again for
what the newer one restores for free). An unreadable lock is copied to .pipeline/ before it is
replaced. A lock from a newer pipeline is not broken, and is refused. Printing: lockcmd.py.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import LockfileError, WriteError
from pipeline.lockfile import (
    LockEntry,
    Lockfile,
    is_newer,
    parse_entry,
    parse_lock,
    render_lock,
    write_lock,
)
from pipeline.manifest import load_settings
from pipeline.plan import hash_file
from pipeline.state import STATE_DIR, RepoLock, StatCache

__all__ = ["Rebuild", "Unrecoverable", "rebuild_lock"]


@dataclass(frozen=True)
class Unrecoverable:
    """An index entry (or a whole index) that could not be rebuilt, where it is and why."""

    where: str  # `output/tiles/index.json: items[3]`
    key: str  # `tiles/lava`, or "" when the entry does not say
    reason: str

    def __str__(self) -> str:
        about = f" ({self.key})" if self.key else ""
        return f"{self.where}{about}: {self.reason}"


@dataclass
class Rebuild:
    """What a rebuild found and did (or, with dry_run, would do)."""

    lockfile: str  # the lock's path as pipeline.yaml names it
    output: str
    rebuilt: list[str] = field(default_factory=list)  # keys recovered from output/
    added: list[str] = field(default_factory=list)  # of those, not in the old lock
    differs: list[str] = field(default_factory=list)  # of those, other in the old lock: kept
    kept: list[str] = field(default_factory=list)  # old entries not recovered, kept
    restorable: list[str] = field(default_factory=list)  # files gone, to restore by asset id
    unrecoverable: list[Unrecoverable] = field(default_factory=list)
    broken: str = ""  # why the old lock was unreadable
    backup: str = ""  # where it was copied (relative to the root)
    changed: bool = False  # the lock's bytes changed (or would)


def rebuild_lock(root: Path, *, dry_run: bool = False) -> Rebuild:
    """Rebuild the lock of the project at `root` from its output folder, under the repo lock."""
    settings = load_settings(root)
    lock_path = root / settings.lockfile
    state = root / STATE_DIR
    result = Rebuild(settings.lockfile, settings.output)
    with RepoLock(state):
        raw, old = _read_old(lock_path, result)
        caches: dict[str, dict[str, str]] = {"collections": {}, "trainings": {}, "uploads": {}}
        found, seen = _scan(root / settings.output, settings.output, result, caches)
        lock = Lockfile(
            items=dict(old.items),
            uploads={**caches["uploads"], **old.uploads},
            trainings={**caches["trainings"], **old.trainings},
            collections={**caches["collections"], **old.collections},
        )
        for key, entry in found.items():
            previous = old.items.get(key)
            if previous is None:
                result.added.append(key)
                lock.items[key] = entry
            elif previous != entry:
                result.differs.append(key)
        result.rebuilt = sorted(found)
        result.kept = sorted(old.items.keys() - found.keys())
        if dry_run:
            result.changed = raw != render_lock(lock)
            return result
        if result.broken and raw is not None:
            result.backup = _back_up(raw, state, lock_path.name)
        result.changed = write_lock(lock_path, lock)
        cache = StatCache.load(state)
        for name, (stat, digest) in seen.items():
            cache.remember(name, stat, digest)
        cache.save(state)
    return result


def _read_old(path: Path, result: Rebuild) -> tuple[bytes | None, Lockfile]:
    """The old lock's bytes (None when there is none) and what of it can be kept."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, Lockfile()
    except OSError as exc:
        raise LockfileError(str(path), f"cannot be read: {exc.strerror}") from None
    try:
        return raw, parse_lock(raw, result.lockfile)
    except LockfileError as exc:
        if is_newer(raw):
            raise  # not broken: rebuilding would throw away what this version cannot read
        result.broken = exc.reason
    return raw, Lockfile()


def _back_up(raw: bytes, state: Path, name: str) -> str:
    """Copy a broken lock to `.pipeline/<name>.broken.<n>`, never over an earlier copy."""
    state.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        target = state / f"{name}.broken.{number}"
        try:
            with target.open("xb") as handle:
                handle.write(raw)
        except FileExistsError:
            number += 1
            continue
        except OSError as exc:
            raise WriteError(exc, target) from None
        return f"{STATE_DIR}/{target.name}"


_Seen = dict[str, tuple[os.stat_result, str]]


def _scan(
    output: Path, label: str, result: Rebuild, caches: dict[str, dict[str, str]]
) -> tuple[dict[str, LockEntry], _Seen]:
    """Every item of every `<collection>/index.json` whose files vouch for it, by key; and the
    stat and sha256 of each file hashed, for the stat cache. The indexes' `caches` (trained
    models, uploads, remote collections) are gathered into `caches`."""
    found: dict[str, LockEntry] = {}
    seen: _Seen = {}
    problems = result.unrecoverable
    for index in sorted(output.glob("*/index.json")):
        shown = f"{label}/{index.parent.name}/index.json"
        try:
            items = _items(index, caches)
        except ValueError as exc:
            problems.append(Unrecoverable(shown, "", str(exc)))
            continue
        collection = index.parent.name
        for number, item in enumerate(items):
            where = f"{shown}: items[{number}]"
            key = _key(collection, item)
            try:
                if key in found:
                    raise ValueError(f"{key} is listed twice")
                entry = _entry(collection, item)
                result.restorable += _check_files(output, label, entry, seen)
            except ValueError as exc:
                problems.append(Unrecoverable(where, key, str(exc)))
                continue
            found[key] = entry
    return found, seen


def _items(index: Path, caches: dict[str, dict[str, str]]) -> list[Any]:
    """The items of one index document (its caches into `caches`); ValueError when it is not
    one."""
    try:
        doc = json.loads(index.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror})") from None
    except RecursionError:
        raise ValueError("is not an index (JSON nested too deep)") from None
    except ValueError as exc:
        raise ValueError(f"is not valid JSON ({exc})") from None
    items = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ValueError("is not an index (no list of items)")
    if doc.get("collection") != index.parent.name:
        raise ValueError(
            f"names collection {doc.get('collection')!r}, but is in {index.parent.name}/"
        )
    found = doc.get("caches")
    for name in ("collections", "trainings", "uploads"):
        table = found.get(name) if isinstance(found, dict) else None
        if isinstance(table, dict):
            caches[name].update(
                (k, v) for k, v in table.items() if isinstance(k, str) and isinstance(v, str)
            )
    return items


def _key(collection: str, item: Any) -> str:
    item_id = item.get("id") if isinstance(item, dict) else None
    return f"{collection}/{item_id}" if isinstance(item_id, str) and item_id else ""


def _entry(collection: str, item: Any) -> LockEntry:
    """The lock entry an index item stands for; ValueError says what is missing or wrong."""
    if not isinstance(item, dict):
        raise ValueError("is not an object")
    if not _key(collection, item):
        raise ValueError("has no id")
    missing = [name for name in ("fingerprint", "request", "files") if name not in item]
    if missing:
        raise ValueError(
            f"has no {' or '.join(missing)} (an index written before `pipeline lock rebuild` "
            "existed holds too little to rebuild from)"
        )
    data: dict[str, Any] = {"fingerprint": item["fingerprint"], "request": item["request"]}
    if "seed_derived" in item:
        data["seed_derived"] = item["seed_derived"]
    data["outputs"] = _records(collection, item["files"], "files")
    stages = item.get("stages", [])
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise ValueError("stages: expected a list of objects")
    data["stages"] = [
        {
            **{k: v for k, v in stage.items() if k not in ("step", "files")},
            "kept": _records(collection, stage.get("files", []), f"stages[{n}].files"),
        }
        for n, stage in enumerate(stages)
    ]
    if "remote_collection" in item:
        data["remote_collection"] = item["remote_collection"]
    try:
        return parse_entry(data)
    except ValueError as exc:
        raise ValueError(re.sub(r"^outputs\.(\d+)", r"files[\1]", str(exc))) from None


def _records(collection: str, files: Any, where: str) -> list[dict[str, Any]]:
    """An index's file entries as lock records (`alt` is the record's caption)."""
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise ValueError(f"{where}: expected a list of objects")
    records = []
    for number, record in enumerate(files):
        name = record.get("file")
        if not isinstance(name, str) or not name or "/" in name or "\\" in name:
            raise ValueError(f"{where}[{number}].file: expected a file name, got {name!r}")
        fields = {("caption" if k == "alt" else k): v for k, v in record.items()}
        records.append({**fields, "file": f"{collection}/{name}"})
    return records


def _check_files(output: Path, label: str, entry: LockEntry, seen: _Seen) -> list[str]:
    """The entry's files that are gone but restorable by asset id; ValueError unless every other
    file is on disk with its recorded size and sha256."""
    gone = []
    for record in entry.files():
        path = output / record.file
        shown = f"{label}/{record.file}"
        try:
            stat = path.stat()
            if stat.st_size != record.size:
                raise ValueError(
                    f"{shown} was altered (size {stat.st_size}, indexed {record.size})"
                )
            digest = hash_file(path)
        except FileNotFoundError:
            if not record.asset_id:
                raise ValueError(f"{shown} is gone, and has no asset id to restore it") from None
            gone.append(shown)
            continue
        except OSError as exc:
            raise ValueError(f"{shown} cannot be read ({exc.strerror})") from None
        if digest != record.sha256:
            raise ValueError(f"{shown} was altered (content differs from index.json)")
        seen[record.file] = (stat, digest)
    return gone
