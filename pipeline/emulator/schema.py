"""Checks a `/generate/custom` body against a model's `inputs` schema, as the real API does.

Every rejection is a 400 whose reason names the input and the rule broken. Checking has no side
effects: data URLs are decoded and returned as `Upload`s for the caller to store only if the
request goes ahead (a dry run or a rejected request creates nothing).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.emulator.catalogue import MAX_SIDE, CatalogueModel, output_size
from pipeline.emulator.render import ImageFacts, NotAnImage, inspect
from pipeline.emulator.wire import bad_request

_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,(?P<data>.*)$", re.S
)
# Query parameters the SDK would move into the body if given there by mistake.
_QUERY_ONLY = ("projectId", "dryRun", "ipDetection")


class Lookup(Protocol):
    """What validation needs to know about existing assets and models."""

    def asset_facts(self, asset_id: str) -> ImageFacts | None:
        """The image facts of a live asset, or None if there is no such asset."""

    def model_state(self, model_id: str) -> tuple[str, str] | None:
        """(status, type) of a model the account can use, or None if there is none."""


@dataclass(frozen=True)
class Upload:
    """A data URL found in a file input: becomes an asset if the request goes ahead."""

    input: str
    index: int | None
    data: bytes
    facts: ImageFacts


@dataclass
class Checked:
    """A valid request: inputs with defaults filled in, facts of its images, pending uploads."""

    values: dict[str, Any]
    images: dict[str, list[ImageFacts]] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)


def check(model: CatalogueModel, body: Mapping[str, Any], lookup: Lookup) -> Checked:
    """Validate `body` for `model`; ApiProblem(400) naming the first input that is wrong."""
    names = [spec["name"] for spec in model.inputs]
    for key in body:
        if key in _QUERY_ONLY:
            raise bad_request(
                f'"{key}" is not an input of model {model.id}',
                hint=f"send {key} as a query parameter",
            )
        if key not in names:
            raise bad_request(
                f'Unknown input "{key}" for model {model.id}',
                hint=f"valid inputs: {', '.join(names)}",
            )
    given = {k: v for k, v in body.items() if v is not None}
    checked = Checked(values={**model.defaults(), **given})
    for spec in model.inputs:
        name = spec["name"]
        if name not in given:
            if _required(spec, given):
                raise bad_request(f'Missing required input "{name}" for model {model.id}')
            continue
        _check_value(spec, given[name], checked, lookup)
    width, height = output_size(model, checked.values, checked.images)
    if max(width, height) > MAX_SIDE:
        raise bad_request(
            f"The output would be {width}x{height}; model {model.id} produces at most "
            f"{MAX_SIDE} pixels on a side",
            hint="use a smaller input image or scale",
        )
    checked.size = (width, height)
    return checked


def decode_image(value: str, where: str, *, raw_base64: bool = False) -> tuple[bytes, ImageFacts]:
    """Bytes and facts of a data URL (or, with `raw_base64`, bare base64); 400 if not an image."""
    match = _DATA_URL.match(value)
    payload = match.group("data") if match else value if raw_base64 else None
    if payload is None:
        raise bad_request(
            f"{where}: expected an asset id or a data URL (data:image/png;base64,...)"
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{where}: the base64 data is malformed") from None
    try:
        return data, inspect(data)
    except NotAnImage as exc:
        raise bad_request(f"{where}: the data is not an image ({exc})") from None


def _required(spec: Mapping[str, Any], given: Mapping[str, Any]) -> bool:
    rule = spec.get("required") or {}
    if rule.get("always"):
        return True
    if any(other in given for other in rule.get("ifDefined") or {}):
        return True
    if any(other not in given for other in rule.get("ifNotDefined") or {}):
        return True
    conditional = rule.get("conditional")
    if conditional:
        tests = [given.get(k) in v for k, v in dict(conditional.get("values") or {}).items()]
        return bool(tests) and (any(tests) if conditional.get("operator") == "or" else all(tests))
    return False


def _check_value(spec: Mapping[str, Any], value: Any, checked: Checked, lookup: Lookup) -> None:
    name, kind = spec["name"], spec["type"]
    where = f'Invalid input "{name}"'
    if kind == "string":
        _expect(isinstance(value, str), where, "expected a string", value)
        _check_length(spec, len(value), where, "characters")
        _check_allowed(spec, value, where)
    elif kind == "number":
        _check_number(spec, value, where)
    elif kind == "boolean":
        _expect(isinstance(value, bool), where, "expected true or false", value)
    elif kind in ("file", "model"):
        _expect(isinstance(value, str) and value != "", where, "expected an id", value)
        _check_ref(spec, value, None, checked, lookup, where)
    elif kind.endswith("_array"):
        _expect(isinstance(value, list), where, "expected an array", value)
        _check_length(spec, len(value), where, "items")
        for i, item in enumerate(value):
            item_where = f'Invalid input "{name}[{i}]"'
            if kind in ("file_array", "model_array"):
                _expect(isinstance(item, str) and item != "", item_where, "expected an id", item)
                _check_ref(spec, item, i, checked, lookup, item_where)
            elif kind == "string_array":
                _expect(isinstance(item, str), item_where, "expected a string", item)
                _check_allowed(spec, item, item_where)
            elif kind == "number_array":
                _check_number(spec, item, item_where)
            else:
                _expect(isinstance(item, dict), item_where, "expected an object", item)
    else:  # a type the catalogue should not use: a bug in the emulator, not in the request
        raise NotImplementedError(f"input type {kind} is not emulated")


def _check_ref(
    spec: Mapping[str, Any],
    value: str,
    index: int | None,
    checked: Checked,
    lookup: Lookup,
    where: str,
) -> None:
    name = spec["name"]
    if spec["type"].startswith("model"):
        state = lookup.model_state(value)
        if state is None:
            raise bad_request(f'{where}: model "{value}" not found')
        status, model_type = state
        if status != "trained":
            raise bad_request(f'{where}: model "{value}" is not trained (status {status})')
        allowed = spec.get("modelTypes")
        if allowed and model_type not in allowed:
            raise bad_request(
                f'{where}: model "{value}" is of type {model_type}; expected {", ".join(allowed)}'
            )
        return
    if value.startswith("data:"):
        data, facts = decode_image(value, where)
        checked.uploads.append(Upload(name, index, data, facts))
    else:
        found = lookup.asset_facts(value)
        if found is None:
            raise bad_request(f'{where}: asset "{value}" not found', hint="upload it first")
        facts = found
    checked.images.setdefault(name, []).append(facts)


def _check_number(spec: Mapping[str, Any], value: Any, where: str) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    _expect(ok, where, "expected a number", value)
    _check_allowed(spec, value, where)
    lo, hi, step = spec.get("min"), spec.get("max"), spec.get("step")
    bounds = f"{_fmt(lo)} to {_fmt(hi)}" + (f" in steps of {_fmt(step)}" if step else "")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise bad_request(f"{where}: {_fmt(value)} is out of range (allowed: {bounds})")
    if step:
        units = (value - (lo or 0)) / step
        if abs(units - round(units)) > 1e-6:
            raise bad_request(
                f"{where}: {_fmt(value)} is not a multiple of {_fmt(step)} (allowed: {bounds})"
            )


def _check_allowed(spec: Mapping[str, Any], value: Any, where: str) -> None:
    allowed = spec.get("allowedValues")
    if allowed is not None and value not in allowed:
        shown = ", ".join(map(_fmt, allowed))
        raise bad_request(f"{where}: {_fmt(value)} is not one of the allowed values: {shown}")


def _check_length(spec: Mapping[str, Any], length: int, where: str, unit: str) -> None:
    lo, hi = spec.get("minLength"), spec.get("maxLength")
    if lo is not None and length < lo:
        raise bad_request(f"{where}: {length} {unit}, at least {_fmt(lo)} expected")
    if hi is not None and length > hi:
        raise bad_request(f"{where}: {length} {unit}, at most {_fmt(hi)} allowed")


def _expect(ok: bool, where: str, what: str, value: Any) -> None:
    if not ok:
        raise bad_request(f"{where}: {what}, got {type(value).__name__} {_fmt(value)}")


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
