"""The Scenario API's response shapes as lenient pydantic models, as scenario-api.md gives them.

Owns only the wire format: camelCase aliases, extra fields kept, and only the fields the contract
marks ✓ required (everything else optional), so a new server field or a missing nicety never breaks
a run. It does not send anything, translate errors or decide what a status means for the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

TERMINAL_JOB_STATUSES = frozenset({"success", "failure", "canceled"})
"""A job in one of these statuses will not change again (§3.2)."""


class WireModel(BaseModel):
    """Base of every response shape: camelCase on the wire, snake_case in Python, extras kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        protected_namespaces=(),
    )


class AssetRef(WireModel):
    """A pointer to another asset, e.g. a thumbnail: `{assetId, url}`."""

    asset_id: str | None = None
    url: str | None = None


# --- jobs (§3.1, §3.2) -------------------------------------------------------------------------


class StatusChange(WireModel):
    status: str | None = None
    date: str | None = None


class FlowNode(WireModel):
    """One node of a workflow job's `metadata.flow`."""

    id: str | None = None
    status: str | None = None
    type: str | None = None
    job_id: str | None = None
    assets: list[AssetRef] = Field(default_factory=list)


class JobMetadata(WireModel):
    asset_ids: list[str] = Field(default_factory=list)
    error: str | None = None
    hint: str | None = None
    input: dict[str, Any] | None = None
    output: Any = None
    output_model_id: str | None = None
    workflow_id: str | None = None
    workflow_job_id: str | None = None
    flow: list[FlowNode] = Field(default_factory=list)


class Billing(WireModel):
    cu_cost: float
    cu_discount: float
    cu_cost_details: dict[str, float] | None = None
    disable_refund: bool | None = None


class Job(WireModel):
    """An asynchronous job. The key is `jobId`: a job has no `id`."""

    job_id: str
    job_type: str
    status: str
    progress: float
    status_history: list[StatusChange]
    metadata: JobMetadata
    created_at: str
    updated_at: str
    author_id: str | None = None
    owner_id: str | None = None
    billing: Billing | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the job is `success`, `failure` or `canceled`."""
        return self.status in TERMINAL_JOB_STATUSES

    @property
    def run_seconds(self) -> float | None:
        """Seconds from creation to the terminal status, by the API's own dates; None if unknown.

        What a poller should learn from: the time at which it happened to look is later.
        """
        ended = next(
            (c.date for c in reversed(self.status_history) if c.status == self.status), None
        )
        start, end = _instant(self.created_at), _instant(ended or self.updated_at)
        if not self.is_terminal or start is None or end is None or end < start:
            return None
        return end - start


def _instant(text: str | None) -> float | None:
    """Epoch seconds of an ISO date such as `2023-02-03T11:19:41.579Z`; None if it is not one."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


# --- cost envelope (§3.3) ----------------------------------------------------------------------


class IpFinding(WireModel):
    category: str | None = None
    confidence: float | None = None
    filter_id: str | None = None
    filter_name: str | None = None
    flagged: bool | None = None
    reason: str | None = None
    entities: list[Any] | None = None


class IpDetection(WireModel):
    action: str | None = None
    flagged: bool | None = None
    findings: list[IpFinding] = Field(default_factory=list)
    evaluated_filters: Any = None
    analyzed_images_count: int | None = None
    creative_units_charged: float | None = None
    has_detector_error: bool | None = None


class Cost(WireModel):
    """The cost fields that sit beside `job` in generate, caption and train responses."""

    # Parsed from the whole response envelope, so other keys (`job`, `captions`, ...) are dropped
    # here rather than kept as extras: they have their own models.
    model_config = ConfigDict(extra="ignore")

    creative_units_cost: float | None = None
    creative_units_discount: float | None = None
    cost_details: dict[str, float] = Field(default_factory=dict)
    ip_detection: IpDetection | None = None


# --- assets (§3.4) -----------------------------------------------------------------------------


class AssetMetadata(WireModel):
    kind: str
    type: str
    prompt: str | None = None
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    seed: str | int | float | None = None  # a string, sometimes a number
    num_outputs: int | None = None
    model_id: str | None = None
    parent_job_id: str | None = None
    name: str | None = None


class AssetProperties(WireModel):
    size: int
    width: int | None = None
    height: int | None = None
    format: str | None = None


class QualityGate(WireModel):
    status: str | None = None
    computed_at: str | None = None
    version: str | None = None
    overall_score: float | None = None
    verdict: str | None = None


class Asset(WireModel):
    """A stored file. `url` is a signed download link; it expires."""

    id: str
    url: str
    mime_type: str
    kind: str
    status: str
    source: str
    privacy: str
    metadata: AssetMetadata
    properties: AssetProperties
    author_id: str
    owner_id: str
    collection_ids: list[str]
    tags: list[str]
    edit_capabilities: list[str]
    created_at: str
    updated_at: str
    description: str | None = None
    output_index: int | None = None
    original_file_url: str | None = None
    original_mime_type: str | None = None
    thumbnail: AssetRef | None = None
    preview: AssetRef | None = None
    quality_gate: QualityGate | None = None


# --- models (§3.5) -----------------------------------------------------------------------------


class RequiredConditional(WireModel):
    values: Any = None
    operator: str | None = None


class InputRequirement(WireModel):
    """When a model input must be given; an input without one is optional."""

    always: bool | None = None
    if_defined: Any = None
    if_not_defined: Any = None
    conditional: RequiredConditional | None = None


class ModelInput(WireModel):
    """One entry of a model's input schema; `name` is the key in the generate body."""

    name: str
    type: str
    default: Any = None
    allowed_values: list[Any] | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    max_size: int | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    kind: str | None = None
    model_types: list[str] | None = None
    inputs: list[ModelInput] | None = None
    parent: Any = None
    mask_from: str | None = None
    required: InputRequirement | None = None
    label: str | None = None
    description: str | None = None
    hint: str | None = None
    placeholder: str | None = None
    group: str | None = None
    prompt: bool | None = None
    cost_impact: bool | None = None


class LorasComponent(WireModel):
    model_input: str | None = None
    scale_input: str | None = None
    model_id_input: str | None = None


class ResolutionComponent(WireModel):
    width_input: str | None = None
    height_input: str | None = None
    presets: list[dict[str, Any]] = Field(default_factory=list)


class UiConfig(WireModel):
    loras_component: LorasComponent | None = None
    resolution_component: ResolutionComponent | None = None


class TrainingProgress(WireModel):
    stage: str
    updated_at: float  # epoch milliseconds, unlike every other date
    progress: float | None = None
    position: int | None = None
    remaining_time_ms: float | None = None
    started_at: float | None = None


class TrainingImage(WireModel):
    """A model's training image. The contract marks none of its fields required."""

    id: str | None = None
    name: str | None = None
    description: str | None = None
    automatic_captioning: str | None = None
    created_at: str | None = None
    download_url: str | None = None


class Concept(WireModel):
    model_id: str | None = None
    scale: float | None = None
    model_epoch: str | None = None


class Model(WireModel):
    """A model; `inputs` is the schema of its `/generate/custom` body."""

    id: str
    status: str
    type: str
    custom: bool
    capabilities: list[str]
    privacy: str
    source: str
    collection_ids: list[str]
    tags: list[str]
    example_asset_ids: list[str]
    training_images_number: int
    created_at: str
    updated_at: str
    inputs: list[ModelInput] | None = None
    parameters: dict[str, Any] | None = None
    training_progress: TrainingProgress | None = None
    training_stats: dict[str, Any] | None = None
    training_images: list[TrainingImage] | None = None
    name: str | None = None
    short_description: str | None = None
    job_id: str | None = None
    thumbnail: AssetRef | None = None
    concepts: list[Concept] | None = None
    ui_config: UiConfig | None = None
    disable_refund: bool | None = None
    deleted_at: str | None = None


# --- collections (§3.6) ------------------------------------------------------------------------


class Collection(WireModel):
    id: str
    name: str
    owner_id: str
    asset_count: int
    model_count: int
    item_count: int
    created_at: str
    updated_at: str
    thumbnail: AssetRef | None = None


# --- results of the calls that return a job beside its cost ------------------------------------


@dataclass(frozen=True)
class GenerateResult:
    """`POST /generate/custom`: the job (None on a 269 dry run) and what it costs."""

    job: Job | None
    cost: Cost


@dataclass(frozen=True)
class TrainResult:
    """`PUT /models/{id}/train`: job and model are None on a 269 dry run."""

    job: Job | None
    model: Model | None
    cost: Cost


@dataclass(frozen=True)
class CaptionResult:
    """`POST /generate/caption`: one caption per image, in order; empty on a 269 dry run."""

    captions: list[str]
    job: Job | None
    details_level: str | None
    cost: Cost
