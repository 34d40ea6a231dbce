"""Manifests: load `manifests/*.yaml`, check them strictly, expand them into `Item`s (expand.py).

pydantic checks each document's shape in one pass; every problem of every file is gathered into
one InvalidInput, placed at its line only when there is one (yamlsrc). Owns the manifest schema
and its messages; not pipeline.yaml (settings.py), not fingerprints (plan.py).
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Required

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from pipeline.errors import InvalidInput, Location, Problem
from pipeline.expand import Expander, Item, Lora, derive_seed
from pipeline.settings import SETTINGS_FILE, Settings, load_settings
from pipeline.yamlsrc import (
    Issue,
    Key,
    Source,
    SourceError,
    describe,
    did_you_mean,
    validation_issues,
)

__all__ = [
    "Collection",
    "Item",
    "Lora",
    "Settings",
    "derive_seed",
    "load_manifests",
    "load_settings",
]

MAX_SEED = 2**32 - 1
_STRICT = ConfigDict(extra="forbid", strict=True)
_TOP_KEYS = ("collection", "defaults", "items")
_FIELD_KEYS = ("model", "prompt", "negative_prompt", "lora", "seed", "width", "height", "outputs")
_DEFAULT_KEYS = (*_FIELD_KEYS, "params")
_ITEM_KEYS = ("id", *_DEFAULT_KEYS, "matrix")
_PLANNED = {
    "image": "reference images", "strength": "reference images",
    "referenceImages": "reference images", "reference_images": "reference images",
    "then": "post-processing steps", "caption": "captions",
}  # fmt: skip
_PLANNED_TOP = {"train": "style training", "remote_collection": "remote collections"}
_EXPECTED = {
    "collection": "a collection name (text)",
    "defaults": "a mapping of item keys",
    "items": "a non-empty list of items",
    "id": "an id (text)",
    "model": "a model id (non-empty text)",
    "prompt": "a prompt (non-empty text)",
    "negative_prompt": "text",
    "lora": "a LoRA model id, or a list of model ids or {model, scale} mappings",
    "seed": f"an integer from 0 to {MAX_SEED}",
    "width": "a positive integer",
    "height": "a positive integer",
    "outputs": "a positive integer",
    "params": "a mapping of model inputs",
    "matrix": "a non-empty mapping from names to lists of values",
}


@dataclass(frozen=True)
class Collection:
    """The items of one manifest file; `name` is the folder under output/."""

    name: str
    file: str
    items: tuple[Item, ...]


def load_manifests(root: Path, settings: Settings, paths: Sequence[Path] = ()) -> list[Collection]:
    """The collections of `paths` (else the settings' globs); InvalidInput with every problem."""
    problems: list[Problem] = []
    collections: list[Collection] = []
    names: dict[str, Source] = {}
    for path, name in _manifest_files(root, settings, paths, problems):
        try:
            source = Source.read(path, name)
        except SourceError as err:
            problems.append(err.problem)
            continue
        collection_name, collection, found = _load_file(source)
        problems += found
        if collection is not None:
            collections.append(collection)
        if collection_name is not None:
            first = names.setdefault(collection_name.lower(), source)
            if first is not source:
                problems.append(_duplicate_collection(collection_name, source, first))
    if problems:
        raise InvalidInput(problems)
    return collections


def _duplicate_collection(name: str, source: Source, first: Source) -> Problem:
    here = source.find(("collection",))
    other = first.find(("collection",))
    where = f"{first.name}:{other.line}:{other.column}" if other else first.name
    hint = "" if here else "; set 'collection:' to tell them apart"
    message = f"duplicate collection {name!r} (also in {where}{hint})"
    return Problem(here or Location(source.name), message)


def _manifest_files(
    root: Path, settings: Settings, paths: Sequence[Path], problems: list[Problem]
) -> list[tuple[Path, str]]:
    found: dict[str, Path] = {}
    if paths:
        for path in paths:
            if path.is_dir():
                found.update((_display(p, root), p) for p in sorted(path.glob("*.yaml")))
            elif not path.exists():
                problems.append(Problem(Location(_display(path, root)), "file not found"))
            else:
                found.setdefault(_display(path, root), path)
    else:
        for index, pattern in enumerate(settings.manifests):
            try:
                matches = sorted(root.glob(pattern))
            except (ValueError, IndexError, NotImplementedError) as err:  # pathlib's refusals
                where = Location(SETTINGS_FILE, path=f"manifests[{index}]")
                problems.append(Problem(where, f"cannot use the glob {pattern!r}: {err}"))
                continue
            for path in matches:
                if path.is_file():
                    found.setdefault(_display(path, root), path)
    return [(path, name) for name, path in found.items()]


def _display(path: Path, root: Path) -> str:
    full = Path(os.path.abspath(path))
    try:
        return full.relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return full.as_posix()


def _load_file(source: Source) -> tuple[str | None, Collection | None, list[Problem]]:
    """The collection's name (when usable), the collection (when all is well), the problems."""
    enabled = gc.isenabled()
    gc.disable()  # a big manifest is many small containers that all live on: no cycles to find
    try:
        data, problems = source.parse()
        name, items, issues = _check(source, data)
    except SourceError as err:
        return None, None, [err.problem]
    finally:
        if enabled:
            gc.enable()
    problems += source.problems(issues)
    if problems or name is None:
        return name, None, problems
    return name, Collection(name, source.name, tuple(items)), problems


def _check(source: Source, data: Any) -> tuple[str | None, list[Item], list[Issue]]:
    if data is None:
        return None, [], [Issue((), "the file is empty; a manifest needs 'items', a list of items")]
    if not isinstance(data, dict):
        message = f"expected a mapping with 'items' at the top level, got {describe(data)}"
        return None, [], [Issue((), message)]
    try:
        _document_adapter().validate_python(data)
        issues: list[Issue] = []
    except ValidationError as err:
        issues = validation_issues(err, expected=_expected, unknown_key=_unknown_key)
    expander = Expander(source, data, issues)
    items = expander.run()
    return expander.name, items, issues + expander.issues


# The shape of a manifest, for pydantic. Plain TypedDicts: the data stays as loaded, and absent
# keys stay absent, so "not given" (inherit from defaults) differs from null (turned off).


def _lora_entries(value: Any) -> Any:
    """A lone model id, or a list whose entries are ids or {model, scale}: all as mappings."""
    if isinstance(value, str):
        return [{"model": value}]
    if isinstance(value, list):
        return [{"model": entry} if isinstance(entry, str) else entry for entry in value]
    return value


_Text = Annotated[str, Field(min_length=1)]
_Positive = Annotated[int, Field(gt=0)]


@with_config(_STRICT)
class _LoraSpec(TypedDict, total=False):
    model: Required[_Text]
    scale: Annotated[float, Field(allow_inf_nan=False)] | None


@with_config(_STRICT)
class _Fields(TypedDict, total=False):
    model: _Text | None
    prompt: _Text | None
    negative_prompt: str | None
    lora: Annotated[list[_LoraSpec] | None, BeforeValidator(_lora_entries)]
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None
    width: _Positive | None
    height: _Positive | None
    outputs: _Positive | None
    params: dict[str, Any] | None


@with_config(_STRICT)
class _ItemSpec(_Fields, total=False):
    id: Required[str]
    matrix: Annotated[dict[str, Annotated[list[Any], Field(min_length=1)]], Field(min_length=1)]


@with_config(_STRICT)
class _Document(TypedDict, total=False):
    collection: str
    defaults: _Fields | None
    items: Required[Annotated[list[_ItemSpec], Field(min_length=1)]]


@functools.cache
def _document_adapter() -> TypeAdapter[_Document]:
    return TypeAdapter(_Document)  # built on first use: importing this module stays cheap


def _expected(loc: tuple[Key, ...]) -> str:
    if loc[:1] == ("items",) and len(loc) >= 2:
        rel = loc[2:]
        if not rel:
            return "an item (a mapping with 'id' and 'prompt')"
    elif loc[:1] == ("defaults",) and len(loc) >= 2:
        rel = loc[1:]
    else:
        return _EXPECTED.get(str(loc[0]), "a mapping") if loc else "a mapping"
    name, rest = rel[0], rel[1:]
    if name == "lora" and rest:
        if len(rest) == 1:
            return "a LoRA model id or a {model, scale} mapping"
        return "a finite number" if rest[1] == "scale" else "a LoRA model id (non-empty text)"
    if name == "matrix" and rest:
        return "a non-empty list of values"
    return _EXPECTED.get(str(name), "a valid value")


def _unknown_key(parent: tuple[Key, ...], key: Key) -> str:
    if not isinstance(key, str):
        return f"unknown key {describe(key)}"
    in_item = len(parent) == 2 and parent[0] == "items"
    if (in_item or parent == ("defaults",)) and key in _PLANNED:
        return f"{key} is not supported yet (planned: {_PLANNED[key]})"
    if not parent and key in _PLANNED_TOP:
        return f"{key} is not supported yet (planned: {_PLANNED_TOP[key]})"
    if parent == ("defaults",) and key in ("id", "matrix"):
        return f"{key!r} cannot be in defaults: each item sets its own"
    if not parent and key in _ITEM_KEYS:
        return f"unknown key {key!r} at the top level: item keys go in 'defaults' or on the items"
    options: tuple[str, ...] = _TOP_KEYS
    if in_item:
        options = _ITEM_KEYS
    elif parent == ("defaults",):
        options = _DEFAULT_KEYS
    elif parent:
        options = ("model", "scale")  # a {model, scale} entry of `lora`
    return f"unknown key {key!r}{did_you_mean(key, options)}"
