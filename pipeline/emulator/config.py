"""Emulator settings: `EmulatorConfig`, onto which the `pipeline emulator` flags map one to one.

Also owns the job-duration distributions (`Duration`, `parse_duration`). Fault specs live in
faults.py; nothing here has behaviour beyond parsing and checking values.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.emulator.faults import Faults

DurationKind = Literal["fixed", "uniform", "lognormal"]
_DURATION_FORMS = '"2", "fixed:2", "uniform:0.5,2" or "lognormal:0,0.5"'


@dataclass(frozen=True)
class Duration:
    """A distribution of seconds; `sample` draws one value from it."""

    kind: DurationKind
    a: float
    b: float = 0.0

    def sample(self, rng: random.Random) -> float:
        """One duration in seconds, never negative."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return math.exp(rng.gauss(self.a, self.b))

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.a:g}"
        return f"{self.kind}:{self.a:g},{self.b:g}"


def parse_duration(spec: Duration | str | float) -> Duration:
    """Read a job-duration spec; ValueError when it is not one of the forms below.

    "2" or 2.0 or "fixed:2"   always 2 seconds
    "uniform:0.5,2"           uniformly between 0.5 and 2 seconds
    "lognormal:0,0.5"         exp(N(mu=0, sigma=0.5)) seconds: median e^mu, a long right tail
    """
    if isinstance(spec, Duration):
        return spec
    if isinstance(spec, int | float):
        return _checked(Duration("fixed", float(spec)), str(spec))
    text = spec.strip()
    kind, _, rest = text.partition(":") if ":" in text else ("fixed", "", text)
    try:
        numbers = [float(part) for part in rest.split(",")]
    except ValueError:
        raise ValueError(f"job duration {spec!r}: expected {_DURATION_FORMS}") from None
    if kind == "fixed" and len(numbers) == 1:
        return _checked(Duration("fixed", numbers[0]), spec)
    if kind in ("uniform", "lognormal") and len(numbers) == 2:
        shape: DurationKind = "uniform" if kind == "uniform" else "lognormal"
        return _checked(Duration(shape, numbers[0], numbers[1]), spec)
    raise ValueError(f"job duration {spec!r}: expected {_DURATION_FORMS}")


def _checked(duration: Duration, spec: str) -> Duration:
    if not all(math.isfinite(x) for x in (duration.a, duration.b)):
        raise ValueError(f"job duration {spec!r}: numbers must be finite")
    if duration.kind == "fixed" and duration.a < 0:
        raise ValueError(f"job duration {spec!r}: seconds cannot be negative")
    if duration.kind == "uniform" and not 0 <= duration.a <= duration.b:
        raise ValueError(f"job duration {spec!r}: expected 0 <= low <= high")
    if duration.kind == "lognormal" and duration.b < 0:
        raise ValueError(f"job duration {spec!r}: sigma cannot be negative")
    return duration


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves. Strings are accepted where the command line gives strings.

    api_key, api_secret   the only Basic-auth credentials accepted; anything else gets 401
    job_duration          seconds from queued to success (a `parse_duration` spec)
    training_duration     seconds a model training takes (same spec)
    parallel_cap          jobs in flight allowed per account; past it, 429 parallel-custom-jobs
    rate_limit            requests per second on /v1 (token bucket, burst of one second); None: off
    url_ttl               lifetime in seconds of the signed asset URLs
    seed                  makes ids, durations, seeds and faults reproducible; None: a fresh one
    faults                a `Faults` or its spec string (see `Faults.parse`)
    state_dir             where jobs, assets and models persist; None: memory only
    bill_factor           what a generation bills against its dry-run estimate (1: the same);
                          a real account's bill can differ (a quality gate, a tier change)
    """

    api_key: str = "local"
    api_secret: str = "local"
    job_duration: Duration | str | float = 2.0
    training_duration: Duration | str | float = 10.0
    parallel_cap: int | None = None
    rate_limit: float | None = None
    url_ttl: float = 3600.0
    seed: int | None = None
    faults: Faults | str = field(default_factory=Faults)
    state_dir: Path | None = None
    bill_factor: float = 1.0

    def __post_init__(self) -> None:
        parse_duration(self.job_duration)
        parse_duration(self.training_duration)
        Faults.coerce(self.faults)
        if self.parallel_cap is not None and self.parallel_cap < 1:
            raise ValueError(f"parallel cap {self.parallel_cap}: must be at least 1")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ValueError(f"rate limit {self.rate_limit}: must be more than 0 requests/s")
        if not (math.isfinite(self.bill_factor) and self.bill_factor >= 0):
            raise ValueError(f"bill factor {self.bill_factor}: must be a number, 0 or more")
        if not self.url_ttl > 0:
            raise ValueError(f"url ttl {self.url_ttl}: must be more than 0 seconds")
