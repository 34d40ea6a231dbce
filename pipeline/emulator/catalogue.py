"""The public models the emulator offers, with the input schemas `/generate/custom` checks.

Ids are the real ones the public guides use. Each model also says how its outputs are made (`mode`),
what they cost and what size they come out; validation itself is schema.py, pixels are render.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.emulator.render import ImageFacts

FLUX = "model_bfl-flux-2-dev"
IMAGEN = "model_imagen4-ultra"
BACKGROUND_REMOVER = "photoroom-background-remover"
GEMINI = "google-gemini-3-1-flash"
UPSCALER = "model_upscale-v3"
LORA_TYPES = ["flux.2-dev-lora"]
# Trained LoRAs every emulated account starts with (the example manifests use the first).
PRESET_LORAS = {"model_pixel-style": "Pixel style", "model_watercolor-style": "Watercolor style"}

_ALWAYS = {"always": True}
_IMAGEN_SIZES = {
    "1:1": (1024, 1024),
    "3:4": (896, 1280),
    "4:3": (1280, 896),
    "9:16": (768, 1408),
    "16:9": (1408, 768),
}
_GEMINI_SIZES = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
CATALOGUE_DATE = 1_767_225_600.0  # 2026-01-01: when the catalogue and preset LoRAs "appeared"
MAX_SIDE = 8192  # larger outputs are refused, as an upscaler's limit


@dataclass(frozen=True)
class CatalogueModel:
    """A public model: its `inputs` schema (ModelInput list) and how the emulator fakes it."""

    id: str
    name: str
    mode: str  # txt2img | remove-background | edit | upscale
    source: str  # the produced assets' source and metadata.type
    capabilities: tuple[str, ...]
    inputs: tuple[dict[str, Any], ...]
    cost_per_output: float
    short_description: str
    ui_config: dict[str, Any] = field(default_factory=dict)

    def input(self, name: str) -> dict[str, Any] | None:
        """The schema entry of one input."""
        return next((spec for spec in self.inputs if spec["name"] == name), None)

    def defaults(self) -> dict[str, Any]:
        """Every input that has a default, with it."""
        return {spec["name"]: spec["default"] for spec in self.inputs if "default" in spec}


def _prompt(required: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "prompt", "type": "string", "label": "Prompt", "prompt": True}
    spec["maxLength"] = 4000
    if required:
        spec["required"] = _ALWAYS
    return spec


def _number(name: str, lo: float, hi: float, step: float, default: float | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "type": "number", "min": lo, "max": hi, "step": step}
    if default is not None:
        spec["default"] = default
    return spec


def _image(name: str, *, required: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "type": "file", "kind": "image", "parent": True}
    if required:
        spec["required"] = _ALWAYS
    return spec


_NUM_OUTPUTS = _number("numOutputs", 1, 4, 1, 1)
_SEED = _number("seed", 0, 2147483647, 1, None)

CATALOGUE: Mapping[str, CatalogueModel] = {
    m.id: m
    for m in (
        CatalogueModel(
            id=FLUX,
            name="FLUX.2 [dev]",
            mode="txt2img",
            source="txt2img",
            capabilities=("txt2img", "img2img"),
            cost_per_output=10,
            short_description="Black Forest Labs FLUX.2 dev: text to image, LoRA friendly.",
            inputs=(
                _prompt(),
                {"name": "negativePrompt", "type": "string", "maxLength": 4000},
                _image("image", required=False),
                _number("strength", 0.01, 1, 0.01, 0.75),
                _number("width", 256, 2048, 16, 1024),
                _number("height", 256, 2048, 16, 1024),
                _NUM_OUTPUTS,
                _SEED,
                _number("guidance", 1, 10, 0.1, 4),
                _number("numInferenceSteps", 1, 50, 1, 28),
                {"name": "modelId", "type": "model", "modelTypes": LORA_TYPES, "label": "LoRA"},
                {"name": "loras", "type": "model_array", "modelTypes": LORA_TYPES, "maxLength": 5},
                {"name": "lorasScale", "type": "number_array", "min": -2, "max": 2, "maxLength": 5},
            ),
            ui_config={
                "lorasComponent": {
                    "label": "LoRAs",
                    "modelInput": "loras",
                    "scaleInput": "lorasScale",
                    "modelIdInput": "modelId",
                },
                "resolutionComponent": {
                    "label": "Resolution",
                    "widthInput": "width",
                    "heightInput": "height",
                    "presets": [
                        {"label": "1:1", "width": 1024, "height": 1024},
                        {"label": "16:9", "width": 1344, "height": 768},
                        {"label": "9:16", "width": 768, "height": 1344},
                    ],
                },
            },
        ),
        CatalogueModel(
            id=IMAGEN,
            name="Imagen 4 Ultra",
            mode="txt2img",
            source="txt2img",
            capabilities=("txt2img",),
            cost_per_output=12,
            short_description="Google Imagen 4 Ultra: text to image, sized by aspect ratio.",
            inputs=(
                _prompt(),
                {
                    "name": "aspectRatio",
                    "type": "string",
                    "allowedValues": list(_IMAGEN_SIZES),
                    "default": "1:1",
                },
                _NUM_OUTPUTS,
                _SEED,
            ),
        ),
        CatalogueModel(
            id=BACKGROUND_REMOVER,
            name="Photoroom Background Remover",
            mode="remove-background",
            source="background-removal",
            capabilities=("img2img",),
            cost_per_output=2,
            short_description="Removes the background: a PNG with a transparent background.",
            inputs=(_image("image", required=True),),
        ),
        CatalogueModel(
            id=GEMINI,
            name="Gemini 3.1 Flash Image",
            mode="edit",
            source="img2img",
            capabilities=("txt2img", "img2img"),
            cost_per_output=8,
            short_description="Google Gemini 3.1 Flash: image editing from instructions.",
            inputs=(
                _prompt(),
                {"name": "referenceImages", "type": "file_array", "kind": "image", "maxLength": 14},
                {
                    "name": "aspectRatio",
                    "type": "string",
                    "allowedValues": ["auto", *_GEMINI_SIZES],
                    "default": "auto",
                },
                _NUM_OUTPUTS,
            ),
        ),
        CatalogueModel(
            id=UPSCALER,
            name="Upscale v3",
            mode="upscale",
            source="upscale",
            capabilities=("img2img",),
            cost_per_output=4,
            short_description="Enlarges an image 2x or 4x.",
            inputs=(
                _image("image", required=True),
                {"name": "scale", "type": "number", "allowedValues": [2, 4], "default": 2},
            ),
        ),
    )
}


def output_count(model: CatalogueModel, values: Mapping[str, Any]) -> int:
    """How many assets one job of `model` makes with these inputs."""
    return int(values.get("numOutputs", 1)) if model.input("numOutputs") else 1


def cost(model: CatalogueModel, values: Mapping[str, Any]) -> float:
    """Compute Units billed for one job."""
    units = model.cost_per_output * output_count(model, values)
    if model.mode == "upscale":
        units *= int(values.get("scale", 2)) // 2
    return units


def output_size(
    model: CatalogueModel, values: Mapping[str, Any], inputs: Mapping[str, list[ImageFacts]]
) -> tuple[int, int]:
    """Width and height of each output, from the inputs (and input images) of the request."""
    first = next((facts[0] for facts in inputs.values() if facts), None)
    if model.mode == "txt2img" and model.input("width"):
        return int(values["width"]), int(values["height"])
    if model.mode == "txt2img":
        return _IMAGEN_SIZES[str(values["aspectRatio"])]
    if model.mode == "edit":
        ratio = str(values.get("aspectRatio", "auto"))
        if ratio in _GEMINI_SIZES:
            return _GEMINI_SIZES[ratio]
        return (first.width, first.height) if first else (1024, 1024)
    assert first is not None, "image inputs are required for this mode"
    scale = int(values.get("scale", 2)) if model.mode == "upscale" else 1
    return first.width * scale, first.height * scale
