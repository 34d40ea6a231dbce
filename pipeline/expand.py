"""Expansion: a manifest's shape-checked data into `Item`s, with the rules pydantic cannot express.

Defaults merged under items, matrix combinations in written order, `{name}` placeholders, ids
and collection names safe as file names and unique (ignoring case), params that neither shadow
first-class keys nor hold what JSON cannot carry. Problems come back as `Issue`s (yamlsrc).
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import Location
from pipeline.inputs import InputFile, InputFiles
from pipeline.yamlsrc import Issue, Key, Source, describe, json_problem, parse_path, render_path

TRAINING_TYPE = "flux.2-dev-lora"  # the model type a `train:` entry makes unless it says
MAX_EXPANSION = 100_000  # items one matrix may make: a typo should not hang the planner
# params keys that a first-class key already sends: the key to write instead.
_FIRST_CLASS = {
    "seed": "seed", "prompt": "prompt", "negativePrompt": "negative_prompt", "width": "width",
    "height": "height", "numOutputs": "outputs", "modelId": "lora",
}  # fmt: skip
_UNSAFE_CHARS = re.compile(r'[<>:"|?*/\\\x00-\x1f\x7f-\x9f]')
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{port}{n}" for port in ("COM", "LPT") for n in range(1, 10)]
)
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
Template = list[tuple[bool, str]]  # literal runs (False, text) and placeholders (True, name)


@dataclass(frozen=True, slots=True)
class Lora:
    """A LoRA applied to the generation: a trained model id and its optional strength.

    `training` names the manifest's own `train:` entry when `model` is one (then `model` is
    that name until the run knows the trained model's id)."""

    model: str
    scale: float | None = None
    training: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One post-processing step of `then:`: a model run on the previous stage's result."""

    name: str  # for `keep: true` files (`<item>.<name>.png`) and messages
    model: str
    params: Mapping[str, Any]
    keep: bool = False


@dataclass(frozen=True)
class Training:
    """A model to train from local images (`train:`), used by items as `lora: <name>`."""

    name: str
    type: str
    images: tuple[InputFile, ...]
    preset: str
    params: Mapping[str, Any]
    file: str
    index: int
    _source: Source | None = field(default=None, repr=False, compare=False)

    def locate(self, field: str = "") -> Location:
        where: tuple[Key, ...] = ("train", self.index)
        steps = parse_path(field)
        if self._source is None:
            return Location(self.file, path=render_path((*where, *steps)))
        return self._source.find((*where, *steps)) or self._source.locate(where)


@dataclass(frozen=True, slots=True)
class Item:
    """One image request after defaults and matrix: everything that decides its pixels."""

    collection: str
    id: str
    model: str
    prompt: str
    negative_prompt: str | None
    loras: tuple[Lora, ...]
    seed: int
    seed_derived: bool  # True when the manifest gave no seed
    width: int | None
    height: int | None
    outputs: int
    params: Mapping[str, Any]  # passthrough model inputs; defaults' params merged, item wins
    file: str  # the manifest, relative to the project root, posix
    index: int  # position in the file's `items` (the template's, for matrix items)
    _source: Source | None = field(default=None, repr=False, compare=False)
    image: InputFile | None = None  # a start image (img2img), with `strength`
    strength: float | None = None
    reference_images: tuple[InputFile, ...] = ()
    steps: tuple[Step, ...] = ()  # `then:`, in order
    caption: bool = False

    @property
    def key(self) -> str:
        """`collection/id`, unique across the project."""
        return f"{self.collection}/{self.id}"

    def locate(self, field: str = "") -> Location:
        """Where `field` (e.g. "width", "params.guidance") was set: the item, else defaults."""
        steps = parse_path(field)
        if steps[:1] == ("loras",):
            steps = ("lora", *steps[1:])  # the Item's name for the manifest's `lora`
        elif steps[:1] == ("reference_images",):
            steps = ("referenceImages", *steps[1:])
        elif steps[:1] == ("steps",):
            steps = ("then", *steps[1:])
        item: tuple[Key, ...] = ("items", self.index)
        if self._source is None:
            return Location(self.file, path=render_path((*item, *steps)))
        if steps:
            found = self._source.find((*item, *steps)) or self._source.find(("defaults", *steps))
            if found is not None:
                return found
        return self._source.locate(item)


def derive_seed(collection: str, item_id: str) -> int:
    """A stable seed for an item that gives none: from sha256 of "collection/id", < 2**31."""
    digest = hashlib.sha256(f"{collection}/{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def unsafe_name(name: str) -> str | None:
    """Why `name` cannot be a file or folder name on some OS; None when it can."""
    if not name:
        return "it is empty"
    if len(name) > 100:
        return f"it is {len(name)} characters long (at most 100)"
    bad = _UNSAFE_CHARS.search(name)
    if bad:
        char = bad.group()
        if char in "/\\":
            return f"it contains {char!r} (names here are file names, not paths)"
        if char < " " or char >= "\x7f":
            return f"it contains a control character ({char!r})"
        return f"it contains {char!r}, which Windows does not allow in file names"
    if name in (".", ".."):
        return f"{name!r} is not a file name"
    if name[-1] in ". ":
        return f"it ends with {'a dot' if name[-1] == '.' else 'a space'}, which Windows drops"
    base = name.split(".", 1)[0].rstrip(" ").upper()
    if base in _RESERVED:
        return f"{base} is a reserved device name on Windows"
    return None


class Expander:
    """Checks and expands one document, given the places pydantic already found wrong.

    Those places are skipped, so one mistake is reported once and not again as a consequence
    (a mistyped `promt` is an unknown key, not also a missing prompt)."""

    def __init__(
        self,
        source: Source,
        data: dict[Any, Any],
        known: list[Issue],
        files: InputFiles | None = None,
    ) -> None:
        self.source = source
        self.data = data
        self.files = files or InputFiles(Path("."))
        self.trainings: list[Training] = []
        self.items_made: list[Item] = []
        self.issues: list[Issue] = []
        self._reported: set[tuple[tuple[Key, ...], str]] = set()
        paths = [issue.path for issue in known]
        heads = {path[0] for path in paths if path}
        self.bad_items = {path[1] for path in paths if len(path) >= 2 and path[0] == "items"}
        self._bad_ids = {
            path[1] for path in paths if path[:1] == ("items",) and path[2:3] == ("id",)
        }
        items_ok = isinstance(data.get("items"), list) and ("items",) not in paths
        self.items: list[Any] = data["items"] if items_ok else []
        self.defaults: dict[str, Any] | None = None
        if "defaults" not in heads:
            self.defaults = data.get("defaults") or {}
        self.name = self._collection_name() if "collection" not in heads else None
        remote = data.get("remote_collection")
        self.remote: bool | None = remote if isinstance(remote, bool) else None
        train = data.get("train")
        self._train: list[Any] = (
            train if isinstance(train, list) and ("train",) not in paths else []
        )
        self._bad_train = {path[1] for path in paths if len(path) >= 2 and path[0] == "train"}
        self._default_loras = _loras(self.defaults.get("lora")) if self.defaults else ()
        self._seen: dict[str, tuple[int, str]] = {}
        self._templates: dict[str, Template | str] = {}

    def run(self) -> list[Item]:
        """The items, in written order; `self.issues` says what is wrong (then drop them)."""
        out: list[Item] = []
        if self.defaults:
            self._check_params(self.defaults.get("params"), ("defaults", "params"))
        self._trainings()
        for index, spec in enumerate(self.items):
            if index not in self.bad_items:
                self._expand(index, spec, out)
            elif self._plain_id(index, spec):
                self._check_id(spec["id"], index, None, {})  # still a name others may clash with
        return out

    def _plain_id(self, index: int, spec: Any) -> bool:
        """True when a rejected item still has a usable literal id (no matrix, no braces)."""
        if not isinstance(spec, dict) or index in self._bad_ids or "matrix" in spec:
            return False
        item_id = spec.get("id")
        return isinstance(item_id, str) and "{" not in item_id and "}" not in item_id

    def _issue(self, path: tuple[Key, ...], message: str, **extra: Any) -> None:
        if (path, message) not in self._reported:
            self._reported.add((path, message))
            self.issues.append(Issue(path, message, **extra))

    def _collection_name(self) -> str | None:
        name = self.data.get("collection")
        path: tuple[Key, ...] = ("collection",)
        label = f"collection name {name!r}"
        if name is None:
            name, path = Path(self.source.name).stem, ()
            label = f"collection name {name!r} (from the file name)"
        reason = unsafe_name(name)
        if reason:
            self._issue(path, f"{label} is not safe as a folder name: {reason}")
            return None
        return str(name)

    def _expand(self, index: int, spec: dict[str, Any], out: list[Item]) -> None:
        defaults = self.defaults
        merged: dict[str, Any] = {**defaults, **spec} if defaults else spec
        buildable = defaults is not None  # else a mistake in defaults hides what they supply
        for key in ("prompt", "model") if buildable else ():
            if merged.get(key) is None:
                message = f"missing required key {key!r} (set it here or in defaults)"
                self._issue(("items", index), message)
                buildable = False
        ok = self._check_params(spec.get("params"), ("items", index, "params"))
        matrix: dict[str, list[Any]] = spec.get("matrix") or {}
        if matrix:
            ok = self._check_matrix(matrix, ("items", index)) and ok
        templates: dict[str, Template] = {}
        for key in ("id", "prompt", "negative_prompt"):
            text = merged.get(key)
            if text and ("{" in text or "}" in text):
                parts = self._template(text, key, ("items", index), key in spec, matrix)
                if parts is None:
                    ok = False
                else:
                    templates[key] = parts
        extras = self._extras(index, spec, merged)
        if not ok or extras is None:
            return
        names = list(matrix)
        choices = [[_as_text(value) for value in matrix[name]] for name in names]
        for combination in itertools.product(*choices) if matrix else [()]:
            filled: dict[str, str] = {}
            if templates:
                values = dict(zip(names, combination, strict=True))
                filled = {key: _fill(parts, values) for key, parts in templates.items()}
            item_id = filled.get("id", spec["id"])
            if not self._check_id(item_id, index, templates.get("id"), matrix) or not buildable:
                continue
            seed = merged.get("seed")
            out.append(
                Item(
                    self.name or "", item_id, merged["model"],
                    filled.get("prompt", merged["prompt"]),
                    filled.get("negative_prompt", merged.get("negative_prompt")),
                    _loras(spec["lora"]) if "lora" in spec else self._default_loras,
                    derive_seed(self.name or "", item_id) if seed is None else seed, seed is None,
                    merged.get("width"), merged.get("height"), merged.get("outputs") or 1,
                    _merge_params(defaults, spec), self.source.name, index, self.source,
                    **extras,
                )
            )  # fmt: skip

    def _extras(
        self, index: int, spec: dict[str, Any], merged: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The item's input files, `then:` steps and caption; None when one is unusable."""

        def where(key: str) -> tuple[Key, ...]:
            return ("items", index, key) if key in spec else ("defaults", key)

        extras: dict[str, Any] = {}
        found: list[Issue] = []
        image = merged.get("image")
        if image is not None:
            extras["image"] = self.files.one(image, where("image"), found)
        if merged.get("strength") is not None:
            if image is None:
                message = "strength needs an 'image' (it says how far to move from it)"
                found.append(Issue(where("strength"), message))
            extras["strength"] = float(merged["strength"])
        references = merged.get("referenceImages")
        if references:
            listed = [references] if isinstance(references, str) else list(references)
            extras["reference_images"] = self.files.many(listed, where("referenceImages"), found)
        steps = merged.get("then")
        if steps:
            extras["steps"] = self._steps(steps, where("then"), found)
        if merged.get("caption"):
            extras["caption"] = True
        for issue in found:
            self._issue(issue.path, issue.message)
        if found or any(value is None for value in extras.values()):
            return None
        return extras

    def _steps(
        self, specs: list[dict[str, Any]], base: tuple[Key, ...], found: list[Issue]
    ) -> tuple[Step, ...]:
        steps: list[Step] = []
        names: dict[str, int] = {}
        for n, spec in enumerate(specs):
            name = spec.get("name") or str(spec["model"]).removeprefix("model_")
            at = (*base, n, "name") if "name" in spec else (*base, n)
            reason = unsafe_name(name)
            if reason:
                found.append(Issue(at, f"step name {name!r} is not safe in a file name: {reason}"))
            elif name.casefold() in names:
                first = names[name.casefold()]
                message = f"two steps named {name!r} (then[{first}] too); give one a 'name'"
                found.append(Issue(at, message))
            names.setdefault(name.casefold(), n)
            params = dict(spec.get("params") or {})
            if "image" in params:
                message = "a step's image is the previous stage's result; leave it out"
                found.append(Issue((*base, n, "params", "image"), message, at_key=True))
            problem = json_problem(params) if params else None
            if problem is not None:
                found.append(Issue((*base, n, "params", *problem[0]), problem[1]))
            steps.append(Step(name, spec["model"], params, bool(spec.get("keep"))))
        return tuple(steps)

    def _trainings(self) -> None:
        seen: dict[str, int] = {}
        for index, spec in enumerate(self._train):
            if index in self._bad_train:
                continue
            name = spec["name"]
            reason = unsafe_name(name)
            path: tuple[Key, ...] = ("train", index, "name")
            if reason:
                self._issue(path, f"training name {name!r} is not safe as a name: {reason}")
                continue
            if name.casefold() in seen:
                also = ("train", seen[name.casefold()], "name")
                self._issue(path, f"duplicate training name {name!r}", also=also, also_note="")
                continue
            seen[name.casefold()] = index
            images = spec["images"]
            found: list[Issue] = []
            listed = [images] if isinstance(images, str) else list(images)
            files = self.files.many(listed, ("train", index, "images"), found)
            params = dict(spec.get("params") or {})
            problem = json_problem(params) if params else None
            if problem is not None:
                found.append(Issue(("train", index, "params", *problem[0]), problem[1]))
            for issue in found:
                self._issue(issue.path, issue.message)
            if found or files is None:
                continue
            self.trainings.append(
                Training(
                    name, spec.get("type") or TRAINING_TYPE, files, spec.get("preset") or "style",
                    params, self.source.name, index, self.source,
                )
            )  # fmt: skip

    def _check_id(
        self, item_id: str, index: int, template: Template | None, matrix: dict[str, list[Any]]
    ) -> bool:
        path: tuple[Key, ...] = ("items", index, "id")
        reason = unsafe_name(item_id)
        if reason:
            made = " (made by the matrix)" if matrix else ""
            self._issue(path, f"id {item_id!r}{made} is not safe as a file name: {reason}")
            return False
        folded = item_id.lower()
        first = self._seen.get(folded)
        if first is None:
            self._seen[folded] = (index, item_id)
            return True
        if first[0] != index:
            note = ""
            if first[1] != item_id:
                note = f" as {first[1]!r}; ids must differ in more than letter case"
            also = ("items", first[0], "id")
            self._issue(path, f"duplicate id {item_id!r}", also=also, also_note=note)
            return False
        used = {name for slot, name in template or () if slot}
        missing = ", ".join("{" + name + "}" for name in matrix if name not in used)
        hint = f"put every matrix name in the id (missing: {missing})"
        if not missing:
            hint = "its values must make ids that differ in more than letter case"
        self._issue(path, f"duplicate ids: the matrix makes {item_id!r} more than once; {hint}")
        return False

    def _check_matrix(self, matrix: dict[str, list[Any]], base: tuple[Key, ...]) -> bool:
        ok = True
        for name, values in matrix.items():
            if "{" in name or "}" in name:
                path = (*base, "matrix", name)
                self._issue(path, "matrix names cannot contain braces", at_key=True)
                ok = False
            for j, value in enumerate(values):
                if value is None or not isinstance(value, str | int | float):
                    message = f"expected text or a number, got {describe(value)}"
                    self._issue((*base, "matrix", name, j), message)
                    ok = False
        count = math.prod(len(values) for values in matrix.values())
        if ok and count > MAX_EXPANSION:
            message = f"the matrix makes {count} items; at most {MAX_EXPANSION} per item"
            self._issue((*base, "matrix"), message)
            ok = False
        return ok

    def _template(
        self, text: str, key: str, base: tuple[Key, ...], own: bool, matrix: dict[str, list[Any]]
    ) -> Template | None:
        parts = self._templates.get(text)
        if parts is None:
            parts = self._templates[text] = _parse_template(text)
        if isinstance(parts, str):
            self._issue((*base, key) if own else ("defaults", key), f"{parts} in {key}")
            return None
        for slot, name in parts:
            if not slot or name in matrix:
                continue
            shown, origin = "{" + name + "}", "" if own else " (from defaults)"
            if not matrix:
                literal = "{" + shown + "}"
                message = (
                    f"placeholder {shown!r} in {key}{origin}, but this item has no matrix "
                    f"(write {literal!r} for literal braces)"
                )
            else:
                close = difflib.get_close_matches(name, list(matrix), n=1)
                hint = f" (did you mean {'{' + close[0] + '}'!r}?)" if close else ""
                known = ", ".join(matrix)
                message = f"unknown placeholder {shown!r} in {key}{origin}{hint}; matrix: {known}"
            self._issue((*base, key) if own else base, message)
            return None
        return parts

    def _check_params(self, params: Any, path: tuple[Key, ...]) -> bool:
        if not params:
            return True
        ok = True
        for key in params:
            first = _FIRST_CLASS.get(key)
            if first is not None:
                why = " (a LoRA's model id is sent as modelId)" if key == "modelId" else ""
                message = f"params.{key} duplicates {first!r}{why}; use the {first!r} key instead"
                self._issue((*path, key), message, at_key=True)
                ok = False
        for value in params.values():
            kind = type(value)
            if kind is str or kind is int or kind is bool or value is None:
                continue
            if kind is float and math.isfinite(value):
                continue
            found = json_problem(params)
            if found is not None:
                self._issue((*path, *found[0]), found[1])
                return False
            break
        return ok


def _merge_params(defaults: dict[str, Any] | None, spec: dict[str, Any]) -> dict[str, Any]:
    """Defaults' params under the item's, key by key; null drops a key (or, for all, them all)."""
    own = spec.get("params")
    if own is None and "params" in spec:
        return {}
    inherited = defaults.get("params") if defaults else None
    merged = {**inherited, **own} if inherited and own else dict(own or inherited or {})
    if None in merged.values():
        return {key: value for key, value in merged.items() if value is not None}
    return merged


def _loras(value: Any) -> tuple[Lora, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (Lora(value),)
    return tuple(
        Lora(entry)
        if isinstance(entry, str)
        else Lora(entry["model"], None if entry.get("scale") is None else float(entry["scale"]))
        for entry in value
    )


def _parse_template(text: str) -> Template | str:
    """Literal runs and placeholder names; `{{`/`}}` are braces. A string says what is wrong."""
    parts: Template = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > position:
            parts.append((False, text[position : match.start()]))
        token = match.group()
        if match.group(1) is not None:
            parts.append((True, match.group(1)))
        elif len(token) == 2:
            parts.append((False, token[0]))
        else:
            return f"unmatched {token!r} (write {token * 2!r} for a literal brace)"
        position = match.end()
    if position < len(text):
        parts.append((False, text[position:]))
    return parts


def _fill(parts: Template, values: dict[str, str]) -> str:
    return "".join(values[text] if slot else text for slot, text in parts)


def _as_text(value: str | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)
