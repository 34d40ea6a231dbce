"""Counters that tests and benchmarks read: requests, statuses, paid duplicates, jobs in flight.

Jobs in flight are kept as intervals (start, end) known when a job is created, so the in-flight
series is exact even though jobs only advance when someone looks. Served as JSON at
GET /_emulator/stats; `reset()` starts a new measurement.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any


def request_key(model_id: str, body: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a generate request: equal keys are the same paid work."""
    canonical = json.dumps(
        {"modelId": model_id, "body": body}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class Stats:
    """Counters since the emulator started or since the last `reset()`."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.generates: Counter[str] = Counter()
        self.paid: Counter[str] = Counter()  # trainings and captions: "<kind>:<request key>"
        self.uploads: Counter[str] = Counter()  # sha256 of each uploaded file's bytes
        self.faults: Counter[str] = Counter()
        self.jobs_created = 0
        self.billed = 0.0  # creative units billed by paid generations
        self._intervals: dict[str, tuple[float, float]] = {}
        self._since = clock()

    def reset(self) -> None:
        """Zero every counter; jobs still in flight stay counted from now on."""
        now = self._clock()
        self.requests.clear()
        self.statuses.clear()
        self.generates.clear()
        self.paid.clear()
        self.uploads.clear()
        self.faults.clear()
        self.jobs_created = 0
        self.billed = 0.0
        self._intervals = {
            job: (max(start, now), end)
            for job, (start, end) in self._intervals.items()
            if end > now
        }
        self._since = now

    def record_request(self, endpoint: str, status: int | None) -> None:
        """One request: `endpoint` is "METHOD /route/{template}"; `status` None if none was sent."""
        self.requests[endpoint] += 1
        if status is not None:
            self.statuses[status] += 1

    def record_fault(self, knob: str) -> None:
        """One injected fault."""
        self.faults[knob] += 1

    def record_generate(self, key: str, units: float = 0.0) -> None:
        """An accepted, paid generate call (see `request_key`) and the units it billed."""
        self.generates[key] += 1
        self.billed += units

    def record_paid(self, kind: str, body: Mapping[str, Any], units: float) -> None:
        """An accepted paid call other than a generation (`training`, `caption`): equal
        bodies (a training's: its images' content and parameters) are the same paid work."""
        self.paid[f"{kind}:{request_key(kind, body)}"] += 1
        self.billed += units

    def record_upload(self, data: bytes) -> None:
        """An asset uploaded: the same bytes twice is a duplicate upload."""
        self.uploads[hashlib.sha256(data).hexdigest()] += 1

    @property
    def duplicate_paid(self) -> int:
        """Trainings and captions paid more than once for the same work."""
        return sum(count - 1 for count in self.paid.values())

    @property
    def duplicate_uploads(self) -> int:
        return sum(count - 1 for count in self.uploads.values())

    def job_started(self, job_id: str, start: float, end: float) -> None:
        """A generation job now in flight until `end` (its planned terminal time)."""
        self.jobs_created += 1
        self._intervals[job_id] = (start, end)

    def job_ended(self, job_id: str, end: float) -> None:
        """A job ended earlier than planned (canceled)."""
        if job_id in self._intervals:
            start, planned = self._intervals[job_id]
            self._intervals[job_id] = (start, min(planned, max(start, end)))

    @property
    def duplicate_generates(self) -> int:
        """Paid generate calls beyond the first for the same request: work paid twice."""
        return sum(count - 1 for count in self.generates.values())

    @property
    def rate_limited(self) -> int:
        """429 answers sent (parallel cap and rate limit alike)."""
        return self.statuses[429]

    @property
    def in_flight(self) -> int:
        """Generation jobs queued or running now."""
        now = self._clock()
        return sum(1 for start, end in self._intervals.values() if start <= now < end)

    def in_flight_series(self) -> list[tuple[float, int]]:
        """(time, jobs in flight from then on), one point per change, up to now."""
        now = self._clock()
        deltas: Counter[float] = Counter()
        for start, end in self._intervals.values():
            if start <= now and start < end:
                deltas[start] += 1
                if end <= now:
                    deltas[end] -= 1
        points, level = [(self._since, 0)], 0
        for t in sorted(deltas):
            if deltas[t]:
                level += deltas[t]
                if points[-1][0] == t:
                    points.pop()
                points.append((t, level))
        return points

    @property
    def max_in_flight(self) -> int:
        """The most generation jobs in flight at once."""
        return max(level for _, level in self.in_flight_series())

    def in_flight_seconds(self) -> dict[int, float]:
        """Histogram: seconds spent at each number of jobs in flight, up to now."""
        points = [*self.in_flight_series(), (self._clock(), 0)]
        spent: dict[int, float] = {}
        for (t0, level), (t1, _) in itertools.pairwise(points):
            spent[level] = spent.get(level, 0.0) + max(0.0, t1 - t0)
        return {level: round(seconds, 6) for level, seconds in sorted(spent.items())}

    def as_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (what GET /_emulator/stats answers)."""
        return {
            "since": self._since,
            "requests": dict(sorted(self.requests.items())),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "generates": dict(sorted(self.generates.items())),
            "duplicate_generates": self.duplicate_generates,
            "paid": dict(sorted(self.paid.items())),
            "duplicate_paid": self.duplicate_paid,
            "uploads": dict(sorted(self.uploads.items())),
            "duplicate_uploads": self.duplicate_uploads,
            "jobs_created": self.jobs_created,
            "billed": self.billed,
            "rate_limited": self.rate_limited,
            "faults": dict(sorted(self.faults.items())),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "in_flight_series": [[t, n] for t, n in self.in_flight_series()],
            "in_flight_seconds": {str(k): v for k, v in self.in_flight_seconds().items()},
        }
