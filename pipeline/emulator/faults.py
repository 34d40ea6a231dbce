"""Fault injection settings: which failures to simulate, where, and how often.

`Faults` is plain data with a compact spec parser for the command line; `FaultDice` turns it into a
reproducible decision per request. Acting on a decision (the ASGI side) is middleware.py's job.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

KNOBS = (
    "error_500",
    "error_503",
    "error_429",
    "drop",
    "timeout",
    "slow",
    "truncate",
    "expire",
    "job_failure",
    "stuck",
)
GROUPS = ("generate", "jobs", "assets", "download", "models", "other")
ALL = "*"
_SETTINGS = ("slow_delay", "timeout_delay", "retry_after")


def group_of(path: str) -> str:
    """The endpoint group of a request path, as used in fault specs."""
    if path.startswith("/_emulator/files/"):
        return "download"
    for group in ("generate", "jobs", "assets", "models"):
        if path == f"/v1/{group}" or path.startswith(f"/v1/{group}/"):
            return group
    return "other"


@dataclass(frozen=True)
class Faults:
    """Probabilities (0..1) of simulated failures, per endpoint group, plus their timings.

    rates: {group or "*": {knob: probability}}; a group's own value for a knob beats "*".
    Knobs:
      error_500, error_503  answer 500/503 before doing anything
      error_429             answer 429 Too Many Requests before doing anything (a rate-limit
                            storm, not the parallel cap: no `parallel-custom-jobs` details)
      drop                  do the work (a job is created...), then drop the connection
      timeout               do the work, then answer too late (after `timeout_delay` seconds)
      slow                  wait `slow_delay` seconds (the injected sleep), then answer normally
      truncate              downloads: send only the first half of the file
      expire                assets: hand out signed URLs that have already expired;
                            downloads: reject a valid URL as expired (403)
      job_failure           generate: the job ends in `failure` with metadata.error and .hint;
                            models: a training (PUT /models/{id}/train) ends `failed` so
      stuck                 generate: the job reaches `in-progress` and never leaves it (until
                            canceled), like a job lost by a worker
    retry_after: the Retry-After sent on 429 and 503 answers (seconds, any value, even absurd
    ones, or a raw string sent verbatim); None lets the emulator choose (the injected 503s and
    429s then send none; the parallel cap and the rate limit send their own estimate).
    """

    rates: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    slow_delay: float = 2.0
    timeout_delay: float = 90.0
    retry_after: float | str | None = None

    def __post_init__(self) -> None:
        for group, knobs in self.rates.items():
            if group != ALL and group not in GROUPS:
                raise ValueError(_unknown("fault group", group, (ALL, *GROUPS)))
            for knob, rate in knobs.items():
                if knob not in KNOBS:
                    raise ValueError(_unknown("fault", knob, KNOBS))
                if not 0 <= rate <= 1:
                    raise ValueError(f"fault {group}:{knob}={rate}: a probability is 0..1")
        for name in ("slow_delay", "timeout_delay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value}: seconds, 0 or more")

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """Read a compact spec: comma-separated `[group:]knob=probability` or `setting=value`.

        Examples: "error_500=0.1,drop=0.05", "generate:timeout=0.2,download:truncate=1",
        "error_503=0.5,retry_after=3600", "error_429=1,retry_after=-5", "slow=1,slow_delay=0.5",
        "generate:stuck=0.2". Groups: generate, jobs,
        assets, download, models, other, or * (the default). Settings: slow_delay,
        timeout_delay, retry_after. An empty spec means no faults. ValueError when malformed.
        """
        rates: dict[str, dict[str, float]] = defaultdict(dict)
        settings: dict[str, float | str] = {}
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"fault spec item {item!r}: expected knob=value")
            group, _, knob = key.strip().rpartition(":")
            if knob in _SETTINGS and not group:
                settings[knob] = _setting(knob, value.strip())
                continue
            rates[group or ALL][knob] = _number(f"{key}={value}", value)
        retry_after = settings.pop("retry_after", None)
        delays = {k: float(v) for k, v in settings.items()}
        return cls(rates=dict(rates), retry_after=retry_after, **delays)

    @classmethod
    def coerce(cls, value: Faults | str | None) -> Faults:
        """A `Faults` from itself, a spec string, or None (no faults)."""
        if value is None:
            return cls()
        return value if isinstance(value, Faults) else cls.parse(value)

    def rate(self, group: str, knob: str) -> float:
        """The probability of `knob` on a request of `group`."""
        own = self.rates.get(group, {})
        return own[knob] if knob in own else self.rates.get(ALL, {}).get(knob, 0.0)

    def spec(self) -> str:
        """This configuration as a spec string that `parse` reads back."""
        items = [
            f"{'' if group == ALL else group + ':'}{knob}={rate:g}"
            for group, knobs in sorted(self.rates.items())
            for knob, rate in sorted(knobs.items())
        ]
        for name, default in (("slow_delay", 2.0), ("timeout_delay", 90.0)):
            if getattr(self, name) != default:
                items.append(f"{name}={getattr(self, name):g}")
        if self.retry_after is not None:
            items.append(f"retry_after={self.retry_after}")
        return ",".join(items)


@dataclass(frozen=True)
class FaultPlan:
    """The faults decided for one request: a set of knob names."""

    knobs: frozenset[str] = frozenset()

    def __contains__(self, knob: object) -> bool:
        return knob in self.knobs


NO_FAULTS = FaultPlan()


class FaultDice:
    """Reproducible draws: the n-th request of a group gets the same decision for the same seed."""

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self._seed = seed
        self._counts: dict[str, int] = defaultdict(int)

    def roll(self, group: str) -> FaultPlan:
        """Decide the faults of the next request in `group`."""
        n = self._counts[group]
        self._counts[group] += 1
        hits = frozenset(
            knob
            for knob in KNOBS
            if (rate := self.faults.rate(group, knob)) > 0
            and unit_draw(self._seed, group, n, knob) < rate
        )
        return FaultPlan(hits) if hits else NO_FAULTS


def unit_draw(*parts: object) -> float:
    """A uniform number in [0, 1) determined by `parts` (stable across processes)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def format_retry_after(value: float | str) -> str:
    """The Retry-After header text for a number of seconds or a raw string."""
    if isinstance(value, str):
        return value
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return f"{value:g}"


def _number(item: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"fault spec item {item!r}: {value!r} is not a number") from None


def _setting(name: str, value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        if name == "retry_after":
            return value  # sent verbatim: tests use it to send malformed headers
        raise ValueError(f"fault spec item {name}={value!r}: not a number") from None


def _unknown(what: str, name: str, choices: tuple[str, ...]) -> str:
    return f"unknown {what} {name!r}; expected one of: {', '.join(choices)}"
