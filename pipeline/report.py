"""What a run did, item by item: the Runner's result, light enough for a no-op run to build.

Kept apart from schedule.py so that a run with nothing to do never imports the scheduler, the
client or the emulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pipeline.errors import ItemFailure, PipelineError

__all__ = ["Event", "ItemResult", "Outcome", "RunReport"]


class Outcome(StrEnum):
    GENERATED = "generated"
    RESTORED = "restored"
    FAILED = "failed"
    SKIPPED = "skipped"  # not submitted: interrupted, or the budget (then `error` says so)


@dataclass(frozen=True)
class Event:
    """One thing that happened to an item, for the progress display."""

    kind: str  # submitted, attached, retry, generated, restored, failed, skipped
    key: str
    detail: str = ""


@dataclass
class ItemResult:
    key: str
    outcome: Outcome
    files: list[str] = field(default_factory=list)
    attempts: int = 0
    error: PipelineError | None = None


@dataclass
class RunReport:
    results: list[ItemResult]
    unchanged: int
    orphaned: int
    seconds: float
    interrupted: bool = False
    spent: float = 0.0  # creative units this run paid, as the API billed them
    trainings: list[ItemResult] = field(default_factory=list)  # keyed `train/<name>`

    def count(self, outcome: Outcome) -> int:
        return sum(1 for result in self.results if result.outcome is outcome)

    @property
    def failures(self) -> list[ItemFailure]:
        """Items that failed, and items the budget kept from starting (they carry an error)."""
        return [
            ItemFailure(r.key, r.error, r.attempts)
            for r in [*self.trainings, *self.results]
            if r.outcome in (Outcome.FAILED, Outcome.SKIPPED) and r.error is not None
        ]
