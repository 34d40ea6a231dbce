"""The one error tree. The CLI catches `PipelineError` and nothing else; anything else is a bug.

    PipelineError                   root; `exit_code` says how the CLI ends
    ├── InvalidInput                the user's files are wrong (exit 2); holds every `Problem` found
    ├── LockfileError               assets.lock unreadable, or written by a newer pipeline (exit 2)
    ├── ApiError                    talking to the API failed
    │   ├── ApiUnreachable          no response: connection refused/dropped, timeout (transient)
    │   └── ApiStatusError          got an error status
    │       ├── ApiTransient        408, 429, 5xx: worth retrying, maybe after `retry_after`
    │       └── ApiRejected         other 4xx or `x-should-retry: false`: retrying cannot help
    │           └── ApiAuthError    401/403: credentials missing or wrong
    ├── JobFailed                   a job ended in `failure` or `canceled`
    ├── JobTimedOut                 a job was still running at the deadline (a rerun re-attaches)
    ├── TrainingFailed              a `train:` model did not train: its items fail with the reason
    ├── DownloadError               an output could not be fetched or is not the announced image
    ├── WriteError                  an output or state file could not be written (disk full, ...)
    ├── RepoBusy                    another run holds this repo's lock
    ├── OverBudget                  the estimate passes the budget: the run does not start (exit 2)
    ├── BudgetReached               an item not started: it would have passed the budget
    └── RunFailed                   a batch finished with failed items (exit 1); one summary

Messages never contain credentials: the client builds them from status, body and path only.
Each error writes its own message, ending with what to do next where there is something to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose."""

    exit_code = 1


@dataclass(frozen=True, order=True)
class Location:
    """A place in a user file: 1-based line and column, and the path inside the document."""

    file: str
    line: int = 0
    column: int = 0
    path: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}"
        return f"{where}: {self.path}" if self.path else where


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the user's input, and where."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class InvalidInput(PipelineError):
    """One or more problems in manifests, settings or the command line."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class LockfileError(PipelineError):
    """The lockfile cannot be used as it is."""

    exit_code = 2

    def __init__(self, path: str, reason: str, *, hint: str = "") -> None:
        self.path = path
        self.reason = reason
        self.hint = hint
        message = f"{path}: {reason}"
        if hint:
            message += f"\n  {hint}"
        super().__init__(message)


class ApiError(PipelineError):
    """A call to the API did not give the answer asked for."""

    transient = False

    def __init__(self, message: str, *, method: str = "", path: str = "") -> None:
        self.method = method
        self.path = path
        where = f"{method} {path}: " if method else ""
        super().__init__(f"{where}{message}")


class ApiUnreachable(ApiError):
    """No response: the request may or may not have reached the server (`maybe_sent`)."""

    transient = True

    def __init__(self, message: str, *, method: str = "", path: str = "", maybe_sent: bool) -> None:
        self.maybe_sent = maybe_sent
        self.retry_after: float | None = None
        super().__init__(message, method=method, path=path)


class ApiStatusError(ApiError):
    """The server answered with an error status."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        method: str = "",
        path: str = "",
        hint: str = "",
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.hint = hint
        self.details = details or {}
        self.retry_after = retry_after
        message = f"HTTP {status}: {reason}" if reason else f"HTTP {status}"
        if hint:
            message += f" (hint: {hint})"
        super().__init__(message, method=method, path=path)


class ApiTransient(ApiStatusError):
    """408, 429 or 5xx: the same request may succeed later."""

    transient = True

    @property
    def maybe_sent(self) -> bool:
        """Whether the server may have acted on the request: all but a 429 (refused at the door)."""
        return self.status != 429

    @property
    def parallel_limit(self) -> bool:
        """True when a 429 says the account's cap on jobs in flight was hit."""
        action = self.details.get("actionName") or self.details.get("action") or ""
        return self.status == 429 and action == "parallel-custom-jobs"


class ApiRejected(ApiStatusError):
    """The request itself is wrong or not allowed; sending it again cannot help."""


class ApiAuthError(ApiRejected):
    """401/403: the credentials are missing, wrong or lack the right."""

    def __init__(self, status: int, reason: str, **kwargs: Any) -> None:
        kwargs.setdefault(
            "hint",
            "check SCENARIO_API_KEY and SCENARIO_API_SECRET, or use --backend local",
        )
        super().__init__(status, reason, **kwargs)


class JobFailed(PipelineError):
    """A job reached `failure` or `canceled`; `error` and `hint` are the API's words."""

    def __init__(self, job_id: str, status: str, error: str = "", hint: str = "") -> None:
        self.job_id = job_id
        self.status = status
        self.error = error
        self.hint = hint
        message = f"job {job_id} ended {status}"
        if error:
            message += f": {error}"
        if hint:
            message += f" (hint: {hint})"
        super().__init__(message)


class JobTimedOut(PipelineError):
    """A job did not finish before the deadline; it may still finish, and is not paid again."""

    def __init__(self, job_id: str, status: str, seconds: float) -> None:
        self.job_id = job_id
        self.status = status
        super().__init__(
            f"job {job_id} still {status} after {seconds:.0f}s; rerun `pipeline run` later to "
            "collect it (it will not be paid again)"
        )


class TrainingFailed(PipelineError):
    """A model of `train:` did not reach `trained`; the items that use it fail with this."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"training {name!r} failed: {reason}")


class DownloadError(PipelineError):
    """An output could not be downloaded, or is not the image the API announced."""

    def __init__(self, asset_id: str, reason: str) -> None:
        self.asset_id = asset_id
        self.reason = reason
        super().__init__(f"asset {asset_id}: {reason}")


class WriteError(PipelineError):
    """The file system refused a write; what was written before is intact."""

    def __init__(self, exc: OSError, path: object = None) -> None:
        self.filename = exc.filename or (str(path) if path is not None else None)
        where = f"{self.filename}: " if self.filename else ""
        super().__init__(f"{where}cannot write ({exc.strerror or exc})")


class RepoBusy(PipelineError):
    """Another `pipeline run` or `prune` is working in this repo; nothing was done."""

    def __init__(self, holder: str) -> None:
        super().__init__(
            f"another pipeline run ({holder}) is working in this repo; nothing was done. "
            "Wait for it to finish, then run again."
        )


@dataclass
class ItemFailure:
    """Why one item of a batch failed."""

    key: str
    error: PipelineError
    attempts: int = 1
    notes: list[str] = field(default_factory=list)


class OverBudget(PipelineError):
    """The dry-run estimate of what a run would pay passes the budget: nothing is started."""

    exit_code = 2

    def __init__(self, estimate: float, budget: float, items: int) -> None:
        self.estimate, self.budget = estimate, budget
        super().__init__(
            f"the {items} item(s) to generate are estimated at {estimate:g} creative units, over "
            f"the budget of {budget:g}; nothing was started. Raise `budget` (or --budget), or run "
            "a selection (`pipeline run <collection>`)"
        )


class BudgetReached(PipelineError):
    """An item was not started: paying for it could have passed the run's budget."""

    def __init__(
        self, spent: float, budget: float, *, priced: float | None, maybe_paid: bool = False
    ) -> None:
        self.spent, self.budget, self.priced = spent, budget, priced
        if priced is None:
            why = "it could not be priced, and a run under a budget pays only for priced items"
        else:
            why = (
                f"{spent:g} of the budget of {budget:g} creative units are spent or committed, "
                f"and its {priced:g} would pass it"
            )
        if maybe_paid:
            head = "not sent again"
            why += (
                "; an earlier attempt may have been paid: its intent is kept, and the next run "
                "looks for its job before sending anything"
            )
        else:
            head = "not started"
        super().__init__(f"{head}: {why}; rerun (with a larger budget) to finish")


class RunFailed(PipelineError):
    """A batch finished, and some items failed; everything else was kept."""

    exit_code = 1

    def __init__(self, failures: list[ItemFailure], *, done: int) -> None:
        self.failures = failures
        self.done = done
        lines = [f"{f.key}: {f.error}" for f in failures]
        stopped = sum(isinstance(f.error, BudgetReached) for f in failures)
        failed = len(failures) - stopped
        counts = [f"{failed} item(s) failed"] if failed else []
        counts += [f"{stopped} not started (budget)"] if stopped else []
        lines.append(
            f"{', '.join(counts)}, {done} done and kept; rerun `pipeline run` to retry only "
            "the ones not done."
        )
        super().__init__("\n".join(lines))
