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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Required

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from pipeline.errors import InvalidInput, Location, Problem
from pipeline.expand import Expander, Item, Lora, Step, Training, derive_seed
from pipeline.inputs import InputFile, InputFiles
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
    "InputFile",
    "Item",
    "Lora",
    "Settings",
    "Step",
    "Training",
    "derive_seed",
    "load_manifests",
    "load_settings",
]

MAX_SEED = 2**32 - 1
_STRICT = ConfigDict(extra="forbid", strict=True)
_TOP_KEYS = ("collection", "defaults", "items", "train", "remote_collection")
_FIELD_KEYS = ("model", "prompt", "negative_prompt", "lora", "seed", "width", "height", "outputs")
_FILE_KEYS = ("image", "strength", "referenceImages", "then", "caption")
_DEFAULT_KEYS = (*_FIELD_KEYS, *_FILE_KEYS, "params")
_ITEM_KEYS = ("id", *_DEFAULT_KEYS, "matrix")
_STEP_KEYS = ("model", "params", "keep", "name")
_TRAIN_KEYS = ("name", "type", "images", "preset", "params")
PRESETS = ("style", "subject", "default")
_EXPECTED = {
    "train": "a list of trainings (each a mapping with 'name' and 'images')",
    "remote_collection": "true or false",
    "image": "a path to an image, relative to the project root",
    "strength": "a number from 0 to 1",
    "referenceImages": "a path or glob, or a list of them (relative to the project root)",
    "then": "a list of steps, each a mapping with 'model' (and 'params', 'keep', 'name')",
    "caption": "true or false",
    "keep": "true or false",
    "name": "a name (text)",
    "type": "a model type, such as 'flux.2-dev-lora'",
    "images": "a path or glob, or a list of them (relative to the project root)",
    "preset": f"one of {', '.join(map(repr, PRESETS))}",
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
    trainings: tuple[Training, ...] = ()
    remote: bool | None = None  # `remote_collection:`; None: as pipeline.yaml says


def load_manifests(root: Path, settings: Settings, paths: Sequence[Path] = ()) -> list[Collection]:
    """The collections of `paths` (else the settings' globs); InvalidInput with every problem."""
    problems: list[Problem] = []
    collections: list[Collection] = []
    names: dict[str, Source] = {}
    files = InputFiles(root)
    for path, name in _manifest_files(root, settings, paths, problems):
        try:
            source = Source.read(path, name)
        except SourceError as err:
            problems.append(err.problem)
            continue
        collection_name, collection, found = _load_file(source, files)
        problems += found
        if collection is not None:
            collections.append(collection)
        if collection_name is not None:
            first = names.setdefault(collection_name.lower(), source)
            if first is not source:
                problems.append(_duplicate_collection(collection_name, source, first))
    if not problems:
        collections = _link_trainings(collections, problems)
    if problems:
        raise InvalidInput(problems)
    return collections


def _link_trainings(collections: list[Collection], problems: list[Problem]) -> list[Collection]:
    """Items' `lora: <name>` tied to the `train:` entry of that name (in any manifest).

    Training names are unique across the project. Once a project trains models, a LoRA that is
    neither one of them nor a model id (`model_...`) is a typo, said with a did-you-mean."""
    trainings: dict[str, Training] = {}
    for collection in collections:
        for training in collection.trainings:
            first = trainings.setdefault(training.name.casefold(), training)
            if first is not training:
                other = first.locate("name")
                where = f"{other.file}:{other.line}:{other.column}"
                message = f"duplicate training name {training.name!r} (also at {where})"
                problems.append(Problem(training.locate("name"), message))
    if not trainings:
        return collections
    known = [training.name for training in trainings.values()]
    linked = []
    for collection in collections:
        items = []
        for item in collection.items:
            loras = []
            for n, lora in enumerate(item.loras):
                named = trainings.get(lora.model.casefold())
                if named is not None:
                    lora = Lora(named.name, lora.scale, named.name)
                elif not lora.model.startswith("model_"):
                    message = (
                        f"no training named {lora.model!r}{did_you_mean(lora.model, known)}; "
                        "a trained model's id starts with 'model_'"
                    )
                    at = item.locate(f"lora[{n}]" if len(item.loras) > 1 else "lora")
                    problems.append(Problem(at, message))
                loras.append(lora)
            changed = tuple(loras) != item.loras
            items.append(replace(item, loras=tuple(loras)) if changed else item)
        linked.append(replace(collection, items=tuple(items)))
    return linked


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


def _load_file(
    source: Source, files: InputFiles
) -> tuple[str | None, Collection | None, list[Problem]]:
    """The collection's name (when usable), the collection (when all is well), the problems."""
    enabled = gc.isenabled()
    gc.disable()  # a big manifest is many small containers that all live on: no cycles to find
    try:
        data, problems = source.parse()
        name, expander, issues = _check(source, data, files)
    except SourceError as err:
        return None, None, [err.problem]
    finally:
        if enabled:
            gc.enable()
    problems += source.problems(issues)
    if problems or name is None or expander is None:
        return name, None, problems
    collection = Collection(
        name, source.name, tuple(expander.items_made), tuple(expander.trainings), expander.remote
    )
    return name, collection, problems


def _check(
    source: Source, data: Any, files: InputFiles
) -> tuple[str | None, Expander | None, list[Issue]]:
    if data is None:
        return (
            None,
            None,
            [Issue((), "the file is empty; a manifest needs 'items', a list of items")],
        )
    if not isinstance(data, dict):
        message = f"expected a mapping with 'items' at the top level, got {describe(data)}"
        return None, None, [Issue((), message)]
    try:
        _document_adapter().validate_python(data)
        issues: list[Issue] = []
    except ValidationError as err:
        issues = validation_issues(err, expected=_expected, unknown_key=_unknown_key)
    expander = Expander(source, data, issues, files)
    expander.items_made = expander.run()
    return expander.name, expander, issues + expander.issues


# The shape of a manifest, for pydantic. Plain TypedDicts: the data stays as loaded, and absent
# keys stay absent, so "not given" (inherit from defaults) differs from null (turned off).


def _lora_entries(value: Any) -> Any:
    """A lone model id, or a list whose entries are ids or {model, scale}: all as mappings."""
    if isinstance(value, str):
        return [{"model": value}]
    if isinstance(value, list):
        return [{"model": entry} if isinstance(entry, str) else entry for entry in value]
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


_Text = Annotated[str, Field(min_length=1)]
_Positive = Annotated[int, Field(gt=0)]
_Paths = Annotated[list[_Text], BeforeValidator(_as_list), Field(min_length=1)]


@with_config(_STRICT)
class _StepSpec(TypedDict, total=False):
    model: Required[_Text]
    params: dict[str, Any] | None
    keep: bool
    name: _Text


@with_config(_STRICT)
class _TrainSpec(TypedDict, total=False):
    name: Required[_Text]
    type: _Text
    images: Required[_Paths]
    preset: Literal["style", "subject", "default"]
    params: dict[str, Any] | None


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
    image: _Text | None
    strength: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None
    referenceImages: _Paths | None
    then: list[_StepSpec] | None
    caption: bool


@with_config(_STRICT)
class _ItemSpec(_Fields, total=False):
    id: Required[str]
    matrix: Annotated[dict[str, Annotated[list[Any], Field(min_length=1)]], Field(min_length=1)]


@with_config(_STRICT)
class _Document(TypedDict, total=False):
    collection: str
    defaults: _Fields | None
    items: Required[Annotated[list[_ItemSpec], Field(min_length=1)]]
    train: list[_TrainSpec]
    remote_collection: bool


@functools.cache
def _document_adapter() -> TypeAdapter[_Document]:
    return TypeAdapter(_Document)  # built on first use: importing this module stays cheap


def _expected(loc: tuple[Key, ...]) -> str:
    if loc[:1] == ("train",) and len(loc) >= 2:
        if len(loc) == 2:
            return "a training (a mapping with 'name' and 'images')"
        if loc[2] == "images" and len(loc) > 3:
            return "a path or glob (non-empty text)"
        return _EXPECTED.get(str(loc[2]), "a valid value")
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
    if name == "referenceImages" and rest:
        return "a path or glob (non-empty text)"
    if name == "then" and rest:
        if len(rest) == 1:
            return "a step (a mapping with 'model')"
        return _EXPECTED.get(str(rest[1]), "a valid value")
    return _EXPECTED.get(str(name), "a valid value")


def _unknown_key(parent: tuple[Key, ...], key: Key) -> str:
    if not isinstance(key, str):
        return f"unknown key {describe(key)}"
    in_item = len(parent) == 2 and parent[0] == "items"
    if parent[-2:-1] == ("then",) or (parent[:1] == ("defaults",) and parent[1:2] == ("then",)):
        return f"unknown key {key!r} in a step{did_you_mean(key, _STEP_KEYS)}"
    if len(parent) == 2 and parent[0] == "train":
        return f"unknown key {key!r} in a training{did_you_mean(key, _TRAIN_KEYS)}"
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
