"""The emulator's records (jobs, assets, models, collections), their ids and the job timeline.

A job is stored as when it started, how long it runs and how it ends; its status, progress and
history at any instant are computed from the clock (`JobRecord.snapshot`), so nothing ticks in the
background. Storage and side effects live in state.py; the wire shapes in wire.py.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Self, cast

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

TERMINAL = frozenset({"success", "failure", "canceled"})
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Fractions of a job's duration at which it enters each status (success at 1.0).
_IN_PROGRESS, _FINALIZING = 0.1, 0.9


def make_id(prefix: str, seed: int, n: int) -> str:
    """The n-th id of a kind, e.g. `job_ocZCnG1Df35XRL1QyCZSRxAG`: base62, reproducible per seed."""
    number = int.from_bytes(hashlib.sha256(f"{seed}:{prefix}:{n}".encode()).digest()[:18], "big")
    chars = []
    for _ in range(24):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return f"{prefix}_{''.join(chars)}"


class Record:
    """JSON round trip for the dataclass records (persistence in state_dir)."""

    id: str

    def to_json(self) -> dict[str, Any]:
        """Every field, as JSON-ready values."""
        return asdict(cast("DataclassInstance", self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """The record saved by `to_json`."""
        return cls(**data)


@dataclass(frozen=True)
class JobSnapshot:
    """A job as seen at one instant."""

    status: str
    progress: float
    history: list[tuple[str, float]]
    updated: float


@dataclass
class JobRecord(Record):
    """One job: a generation (`custom`), a model training, or a caption."""

    id: str
    job_type: str
    model_id: str
    created: float
    duration: float
    outcome: Literal["success", "failure"] = "success"
    inputs: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    cost: float = 0.0
    error: str = ""
    hint: str = ""
    canceled_at: float | None = None
    asset_ids: list[str] = field(default_factory=list)
    output_model_id: str | None = None
    output: Any = None  # a text result (a caption job's captions), in metadata.output
    settled: bool = False  # terminal side effects (outputs, model status) applied
    stuck: bool = False  # the `stuck` fault: in progress forever, unless canceled

    @property
    def _natural_end(self) -> float:
        return math.inf if self.stuck else self.created + self.duration

    @property
    def end(self) -> float:
        """When the job reaches its terminal status (infinity for a stuck job not canceled)."""
        natural = self._natural_end
        return natural if self.canceled_at is None else min(natural, self.canceled_at)

    @property
    def final_status(self) -> str:
        """The terminal status it reaches (or has reached)."""
        if self.canceled_at is not None and self.canceled_at < self._natural_end:
            return "canceled"
        return self.outcome

    def timeline(self) -> list[tuple[str, float]]:
        """Every status the job goes through, with the time it is entered."""
        d = self.duration
        steps = [("queued", self.created), ("in-progress", self.created + _IN_PROGRESS * d)]
        if self.outcome == "success" and not self.stuck:
            steps.append(("finalizing", self.created + _FINALIZING * d))
        steps = [(status, t) for status, t in steps if t < self.end or status == "queued"]
        if math.isfinite(self.end):
            steps.append((self.final_status, self.end))
        return steps

    def snapshot(self, now: float) -> JobSnapshot:
        """Status, progress and history at `now`."""
        history = [(status, t) for status, t in self.timeline() if t <= now]
        if not history:  # a clock that went backwards: show the job as just queued
            history = [("queued", self.created)]
        status = history[-1][0]
        progress = 1.0 if status == "success" else self._progress(min(now, self.end))
        return JobSnapshot(status, progress, history, history[-1][1])

    def _progress(self, t: float) -> float:
        if self.duration <= 0:
            return 0.0
        x = (t - self.created) / self.duration
        if x < _IN_PROGRESS:
            return 0.0
        if x < _FINALIZING:
            return round(0.9 * (x - _IN_PROGRESS) / (_FINALIZING - _IN_PROGRESS), 3)
        return round(min(0.99, 0.9 + 0.9 * (x - _FINALIZING)), 3)


@dataclass
class AssetRecord(Record):
    """An image: uploaded (bytes given) or produced by a job (rendered from `recipe` on demand)."""

    id: str
    created: float
    source: str
    metadata: dict[str, Any]
    recipe: dict[str, Any] | None = None
    job_id: str | None = None
    output_index: int | None = None
    collection_ids: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    hidden: bool = False
    deleted: float | None = None
    updated: float = 0.0
    # Known once the content exists:
    mime_type: str = "image/png"
    format: str = "png"
    size: int = 0
    width: int = 0
    height: int = 0


@dataclass
class TrainingImage(Record):
    """An image attached to a model for training; its pixels are a hidden asset."""

    id: str
    name: str
    asset_id: str
    created: float
    preset: str = "default"


@dataclass
class ModelRecord(Record):
    """A model made by the account (`POST /models`), or a preset LoRA; trained by a job."""

    id: str
    name: str
    type: str
    created: float
    updated: float
    short_description: str = ""
    base_model_id: str | None = None
    collection_ids: list[str] = field(default_factory=list)
    training_images: list[TrainingImage] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    preset_status: str = "new"  # used until a training job exists

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        images = [TrainingImage.from_json(x) for x in data.pop("training_images", [])]
        return cls(**data, training_images=images)


@dataclass
class CollectionRecord(Record):
    """A named group of assets and models."""

    id: str
    name: str
    created: float
    updated: float
    asset_ids: list[str] = field(default_factory=list)
    model_ids: list[str] = field(default_factory=list)
