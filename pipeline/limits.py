"""How hard, how often and how much: the one retry policy, the adaptive jobs-in-flight limit,
polling, and the spending limit of a run under a budget.

Retry (tenacity, configured here once): transient errors only (`ApiError.transient`), exponential
backoff with full jitter from `base` to `cap`, or the server's Retry-After when it gives one (capped
at `retry_after_cap`, so an absurd value cannot stall a run), at most `attempts` tries.

The limit on jobs in flight starts small and grows by one per accepted submission (slow start) up to
the configured ceiling. A 429 naming `parallel-custom-jobs` proves the account's cap is the number
of our jobs in flight at that moment: the window drops to exactly that. While it sits below the
ceiling it probes one step up after a run of completions, and each failed probe doubles the run
needed before the next, so a hidden cap costs a handful of 429s, not a storm.

Polling: a job is first asked about when jobs like it have usually finished (the median of the
durations seen so far), then at intervals that grow with the job's age.

Spending: a paid request reserves its dry-run estimate in the same step as the check against the
budget (no await in between, so parallel submissions cannot all pass one check), and holds it
until its answer; the job is then charged what the API bills, or the estimate while the outcome
is unknown. Charges are kept by fingerprint, so a resend replaces its own earlier charge.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from pipeline.errors import ApiError, BudgetReached

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


async def together(work: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run these at once; the first to fail cancels the others and is raised alone (an item
    fails with one reason, not an exception group)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one) for one in work]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


def is_transient(exc: BaseException) -> bool:
    """Worth another try: no response, 408, 429 or 5xx."""
    return isinstance(exc, ApiError) and exc.transient


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base: float = 0.5
    cap: float = 8.0
    retry_after_cap: float = 60.0

    def delay(self, attempt: int, exc: BaseException | None, rng: random.Random) -> float:
        """Seconds to wait before try `attempt + 1` after `exc` (attempt counts from 1)."""
        hinted = getattr(exc, "retry_after", None)
        if isinstance(hinted, int | float) and hinted > 0:  # as the SDK: 0 means "no advice"
            return float(min(hinted, self.retry_after_cap))
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        retry_if: Callable[[BaseException], bool] = is_transient,
        on_retry: Callable[[BaseException, float], None] | None = None,
    ) -> T:
        """Call `fn` until it succeeds, fails for good, or the attempts run out (then re-raise)."""
        chance = rng or random.Random()

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            seconds = self.delay(state.attempt_number, exc, chance)
            if on_retry is not None and exc is not None:
                on_retry(exc, seconds)
            return seconds

        retrying = AsyncRetrying(
            sleep=sleep,
            stop=stop_after_attempt(self.attempts),
            wait=wait,
            retry=retry_if_exception(retry_if),
            reraise=True,
        )

        async def attempt() -> T:  # tenacity calls a plain callable (a lambda) without awaiting
            return await fn()

        return await retrying(attempt)

    async def send_once(
        self,
        send: Callable[[], Awaitable[T]],
        find: Callable[[], Awaitable[T | None]],
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        on_retry: Callable[[BaseException, float], None] | None = None,
    ) -> T:
        """A request that must take effect at most once (an upload, a training, a caption).

        Retried as `call` retries, except that after a failure that may have reached the API
        (no answer, a 5xx after sending) `find` looks for its effect first, and what it finds
        is the answer: the request is never sent again while it may have worked.
        """
        chance = rng or random.Random()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await send()
            except ApiError as exc:
                if not exc.transient:
                    raise
                maybe_sent = bool(getattr(exc, "maybe_sent", False))
                if attempt >= self.attempts:
                    found = await find() if maybe_sent else None
                    if found is None:
                        raise
                    return found
                seconds = self.delay(attempt, exc, chance)
                if on_retry is not None:
                    on_retry(exc, seconds)
                await sleep(seconds)
                if maybe_sent and (found := await find()) is not None:
                    return found


class AdaptiveLimit:
    """A counting limit on jobs in flight whose size follows the account's hidden cap."""

    def __init__(self, ceiling: int, *, start: int = 2) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = min(self.ceiling, max(1, start))
        self.in_flight = 0
        self.cap_seen: int | None = None
        self.rejections = 0
        self._probe_after = 0
        self._completions = 0
        self._changed = asyncio.Condition()

    async def acquire(self) -> None:
        """Wait for a free slot and take it."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1

    async def release(self, *, completed: bool) -> None:
        """Give a slot back; `completed` says a job finished (a step towards the next probe)."""
        async with self._changed:
            self.in_flight -= 1
            if completed and self.cap_seen is not None and self.limit < self.ceiling:
                self._completions += 1
                if self._completions >= self._probe_after:
                    self._completions = 0
                    self.limit += 1
            self._changed.notify_all()

    async def accepted(self) -> None:
        """A submission was taken: before any cap is seen, open one more slot (slow start)."""
        if self.cap_seen is None and self.limit < self.ceiling:
            async with self._changed:
                self.limit += 1
                self._changed.notify_all()

    async def rejected(self) -> None:
        """A 429 `parallel-custom-jobs` came back for a slot the caller still holds."""
        async with self._changed:
            self.rejections += 1
            cap = max(1, self.in_flight - 1)
            first = self.cap_seen is None
            self._probe_after = cap if first else max(cap, self._probe_after * 2)
            self._completions = 0
            self.cap_seen = cap
            self.limit = cap
            self._changed.notify_all()


_MARGIN = 0.02  # seconds after the expected end: polling just before it costs a second poll


class PollClock:
    """When to ask about a job next, learned from how long jobs take and how they report progress.

    The first poll comes when a quarter of recent jobs were done, so a job that ends early waits
    little. After that the job's own `progress` says when it should end: how progress maps to the
    share of a job's run time is learned from finished jobs (a straight-line fit, since APIs
    rarely report progress linearly), and the next poll is aimed just after the expected end.
    Progress can only bring a poll forward, never past the fallback of polls that spread out
    with the job's age: a job that reports progress badly costs extra polls, never a late result.
    """

    def __init__(self, *, first: float = 1.0, floor: float = 0.25, ceiling: float = 10.0) -> None:
        self.floor = floor
        self.ceiling = ceiling
        self._durations: deque[float] = deque([first], maxlen=50)
        self._points: deque[tuple[float, float]] = deque(maxlen=200)  # (progress, share of run)

    def observe(self, duration: float, seen: Sequence[tuple[float, float]] = ()) -> None:
        """A job took `duration` seconds; `seen` holds the (age, progress) of its earlier polls."""
        self._durations.append(max(0.0, duration))
        if duration > 0:
            self._points.extend(
                (progress, min(1.0, age / duration)) for age, progress in seen if 0 < progress < 1
            )

    def next_delay(self, age: float, progress: float | None = None) -> float:
        """Seconds to wait before the next poll of a job submitted `age` seconds ago.

        `progress` is the job's progress (0 to 1) at its last poll; None before the first poll.
        """
        ranked = sorted(self._durations)
        early = ranked[(len(ranked) - 1) // 4]
        if progress is None and age < early:
            return max(self.floor, early - age + _MARGIN)
        fallback = min(self.ceiling, max(self.floor, 0.25 * age))
        if progress is None or not 0.0 < progress < 1.0:
            return fallback
        share = self._share(progress)
        if share <= 0.0:
            return fallback
        expected_left = age / share - age + _MARGIN
        return min(fallback, max(_MARGIN, 0.05 * age, expected_left))

    def _share(self, progress: float) -> float:
        """The share of its run time a job has behind it when it reports `progress`."""
        points = self._points
        if len({p for p, _ in points}) < 3:
            return progress
        n = len(points)
        mean_p = sum(p for p, _ in points) / n
        mean_s = sum(s for _, s in points) / n
        spread = sum((p - mean_p) ** 2 for p, _ in points)
        slope = sum((p - mean_p) * (s - mean_s) for p, s in points) / spread
        return min(1.0, mean_s + slope * (progress - mean_p))


class Spending:
    """What one run has paid, may have paid, and is about to pay, against its budget.

    `estimates` are the dry-run prices by fingerprint; `budget` None means no limit (then
    nothing is refused, and the charges only feed the summary).
    """

    def __init__(self, budget: float | None, estimates: Mapping[str, float]) -> None:
        self.budget = budget
        self.estimates = dict(estimates)
        self._charged: dict[str, float] = {}  # by fingerprint: billed, or estimated if unknown
        self._reserved = 0.0  # estimates of paid requests on their way
        self._ratio = 1.0  # the most a bill has been above its estimate: later ones are held
        # at the estimate times this, so a tier change or a surcharge stops the run in time

    def price(self, key: str, units: float | None) -> None:
        """A price learnt during the run (a dry run of a request that needed a result first)."""
        if units is not None:
            self.estimates[key] = units

    @property
    def spent(self) -> float:
        """Creative units this run has paid (or may have paid) so far."""
        return sum(self._charged.values())

    def reserve(self, fingerprint: str, *, maybe_paid: bool = False) -> float:
        """Take the request's estimate out of the budget until `release` (returns what it took);
        BudgetReached when it would pass the budget, or when it has no estimate under a budget."""
        priced = self.estimates.get(fingerprint)
        if self.budget is None:
            return 0.0
        if priced is None:
            raise BudgetReached(self.spent, self.budget, priced=None, maybe_paid=maybe_paid)
        priced *= self._ratio
        # A resend replaces its own earlier charge: only what it could add is reserved, or two
        # resends in flight would each count the other twice (its charge and its reservation).
        units = max(0.0, priced - self._charged.get(fingerprint, 0.0))
        if self.spent + self._reserved + units > self.budget:
            others = self.spent + self._reserved - (priced - units)
            raise BudgetReached(others, self.budget, priced=priced, maybe_paid=maybe_paid)
        self._reserved += units
        return units

    def release(self, units: float) -> None:
        """The request `reserve` was for has its answer (or was never sent)."""
        self._reserved -= units

    def paid(self, fingerprint: str, billed: float | None) -> None:
        """The request was answered: charge what the API billed (its estimate when the answer
        says nothing), replacing any earlier charge of this fingerprint."""
        self._charged[fingerprint] = (
            self.estimates.get(fingerprint, 0.0) if billed is None else billed
        )
        self._learn(fingerprint, billed)

    def unknown(self, fingerprint: str) -> None:
        """The request's outcome is unknown (it may have been paid): count its estimate, unless
        this fingerprint is charged already."""
        self._charged.setdefault(fingerprint, self.estimates.get(fingerprint, 0.0))

    def billed(self, fingerprint: str, units: float) -> None:
        """A job's final billing, for a job this run paid for (others are not this run's)."""
        if fingerprint in self._charged:
            self._charged[fingerprint] = units
            self._learn(fingerprint, units)

    def _learn(self, fingerprint: str, billed: float | None) -> None:
        estimate = self.estimates.get(fingerprint)
        if billed is not None and estimate:
            self._ratio = max(self._ratio, billed / estimate)
