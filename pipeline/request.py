"""An item's generate body, and the pre-flight check of it against the model's own input schema.

The body is built from the item alone and deterministically (the same item gives the same bytes),
so an unknown outcome can be reconciled against the job list by comparing inputs. Model-specific
rules (a size step, a range, an unknown input) come from `GET /models/{id}`'s `inputs`, never from
hard-coded tables; each problem points at the manifest line that caused it. This is deliberately
independent of the emulator's server-side check: sharing code would let one bug hide in both.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pipeline.errors import ApiRejected, InvalidInput, Location, Problem
from pipeline.manifest import Item, Step
from pipeline.wire import Model, ModelInput

# Manifest field -> wire input name, for the inputs with first-class names.
WIRE_NAMES = {
    "prompt": "prompt",
    "negative_prompt": "negativePrompt",
    "width": "width",
    "height": "height",
    "outputs": "numOutputs",
    "seed": "seed",
}
_SCALARS: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
}


class ModelSchemas:
    """Each model's schema, fetched once however many items ask at once (`fetch` does the
    call, with its retries); a model the backend does not have is the item's located error."""

    def __init__(self, fetch: Callable[[str], Awaitable[Model]]) -> None:
        self._fetch = fetch
        self._models: dict[str, asyncio.Future[Model]] = {}

    async def of(self, item: Item) -> Model:
        """The schema of `item`'s model; InvalidInput (at `model:`) when there is none."""
        return await self.of_model(item.model, item.locate("model"))

    async def of_model(self, model_id: str, where: Location) -> Model:
        """The schema of `model_id`; InvalidInput at `where` when the backend has no such model."""
        future = self._models.get(model_id)
        if future is None:
            future = self._models[model_id] = asyncio.ensure_future(self._fetch(model_id))
        try:
            return await asyncio.shield(future)
        except ApiRejected as exc:
            if exc.status != 404:
                raise
            problem = Problem(where, f"no model {model_id!r} on this backend")
            raise InvalidInput([problem]) from None


def build_body(
    item: Item,
    model: Model,
    *,
    assets: Mapping[str, str] | None = None,
    trained: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[Problem]]:
    """The wire body for `item` on `model`, and every way it breaks the model's schema.

    `assets`: the asset id of each input file's sha256 (its upload); `trained`: the model id of
    each training a LoRA names. Left out, placeholders stand in (for a check before the run
    has them: the schema rules are the same)."""
    inputs = {spec.name: spec for spec in model.inputs or ()}
    body: dict[str, Any] = {}
    origin: dict[str, str] = {}  # wire name -> manifest field, to locate problems
    problems: list[Problem] = []
    for field, wire in WIRE_NAMES.items():
        value = getattr(item, field)
        if value is None or (field == "outputs" and value == 1 and wire not in inputs):
            continue
        if field == "seed" and item.seed_derived and wire not in inputs:
            continue  # a model without seeds (it still decides the fingerprint, harmlessly)
        body[wire], origin[wire] = value, field
    if item.loras:
        _add_loras(item, model, inputs, body, origin, problems, trained or {})
    uploaded = assets or {}
    if item.image is not None:
        body["image"] = uploaded.get(item.image.sha256, f"asset_{item.image.sha256[:16]}")
        origin["image"] = "image"
    if item.strength is not None:
        body["strength"], origin["strength"] = item.strength, "strength"
    if item.reference_images:
        body["referenceImages"] = [
            uploaded.get(file.sha256, f"asset_{file.sha256[:16]}") for file in item.reference_images
        ]
        origin["referenceImages"] = "reference_images"
    for name, value in item.params.items():
        body[name], origin[name] = value, f"params.{name}"
    _check_body(model, inputs, body, {name: item.locate(field) for name, field in origin.items()},
                item.locate(), problems)  # fmt: skip
    return body, problems


def build_step_body(
    item: Item, index: int, step: Step, model: Model, image: str
) -> tuple[dict[str, Any], list[Problem]]:
    """The wire body of `then[index]` run on the asset `image`, and how it breaks the schema."""
    inputs = {spec.name: spec for spec in model.inputs or ()}
    body: dict[str, Any] = {"image": image, **step.params}
    base = f"steps[{index}]"
    where = {"image": item.locate(base)}
    where |= {name: item.locate(f"{base}.params.{name}") for name in step.params}
    problems: list[Problem] = []
    if "image" not in inputs:
        message = f"model {model.id} takes no image, so it cannot be a `then:` step"
        problems.append(Problem(item.locate(f"{base}.model"), message))
        return body, problems
    _check_body(model, inputs, body, where, item.locate(base), problems)
    return body, problems


def _check_body(
    model: Model,
    inputs: Mapping[str, ModelInput],
    body: Mapping[str, Any],
    where: Mapping[str, Location],
    whole: Location,
    problems: list[Problem],
) -> None:
    for name, value in body.items():
        spec = inputs.get(name)
        at = where.get(name, whole)
        if spec is None:
            known = ", ".join(sorted(inputs)) or "none"
            problems.append(
                Problem(at, f"model {model.id} has no input {name!r} (its inputs: {known})")
            )
            continue
        reason = _check(spec, value)
        if reason:
            problems.append(Problem(at, f"{reason} (model {model.id}, input {name!r})"))
    for spec in inputs.values():
        if spec.required and spec.required.always and spec.name not in body:
            problems.append(Problem(whole, f"model {model.id} requires the input {spec.name!r}"))


def _add_loras(
    item: Item,
    model: Model,
    inputs: Mapping[str, ModelInput],
    body: dict[str, Any],
    origin: dict[str, str],
    problems: list[Problem],
    trained: Mapping[str, str],
) -> None:
    """One LoRA goes in the model-id input; several (or scales) in the LoRA list and scales.
    A trained LoRA is sent as its model's id (a placeholder until the run has it)."""
    component = model.ui_config.loras_component if model.ui_config else None
    single = (component.model_id_input if component else None) or (
        "modelId" if "modelId" in inputs else None
    )
    many = component.model_input if component else None
    scales = component.scale_input if component else None
    scaled = any(lora.scale is not None for lora in item.loras)
    ids = [
        lora.model if lora.training is None else trained.get(lora.training, f"model_{lora.model}")
        for lora in item.loras
    ]
    if len(item.loras) == 1 and not scaled and single:
        body[single], origin[single] = ids[0], "lora"
    elif many:
        body[many], origin[many] = ids, "lora"
        if scaled and scales:
            body[scales] = [1.0 if lora.scale is None else lora.scale for lora in item.loras]
            origin[scales] = "lora"
        elif scaled:
            problems.append(Problem(item.locate("lora"), f"model {model.id} takes no LoRA scales"))
    else:
        problems.append(
            Problem(item.locate("lora"), f"model {model.id} takes no LoRA (no model input)")
        )


def _check(spec: ModelInput, value: Any) -> str:
    """Why `value` breaks the input's rules; empty when it does not."""
    if spec.allowed_values is not None and value not in spec.allowed_values:
        allowed = ", ".join(repr(v) for v in spec.allowed_values)
        return f"{value!r} is not one of {allowed}"
    kinds = _SCALARS.get(spec.type)
    if kinds is not None:
        if isinstance(value, bool) != (spec.type == "boolean") or not isinstance(value, kinds):
            return f"expected a {spec.type}, got {value!r}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _check_number(spec, value)
        if isinstance(value, str) and spec.max_length is not None and len(value) > spec.max_length:
            return f"longer than {spec.max_length} characters"
    if spec.type.endswith("_array"):
        if not isinstance(value, list):
            return f"expected a list, got {value!r}"
        if spec.max_length is not None and len(value) > spec.max_length:
            return f"at most {spec.max_length} entries, got {len(value)}"
    return ""


def _check_number(spec: ModelInput, value: float) -> str:
    if spec.min is not None and value < spec.min:
        return f"{value} is below the minimum {_num(spec.min)}"
    if spec.max is not None and value > spec.max:
        return f"{value} is above the maximum {_num(spec.max)}"
    if spec.step:
        base = spec.min or 0
        steps = (value - base) / spec.step
        if not math.isclose(steps, round(steps), abs_tol=1e-9):
            aligned = math.isclose(base / spec.step, round(base / spec.step), abs_tol=1e-9)
            offset = "" if aligned else f" above {_num(base)}"
            return f"{value} is not a multiple of {_num(spec.step)}{offset}"
    return ""


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
