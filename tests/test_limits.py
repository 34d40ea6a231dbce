from __future__ import annotations

import asyncio
import random

import pytest

from pipeline.errors import ApiRejected, ApiTransient, ApiUnreachable, BudgetReached
from pipeline.limits import AdaptiveLimit, PollClock, RetryPolicy, Spending


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def flaky(*errors: Exception) -> tuple[list[int], object]:
    calls: list[int] = []
    queue = list(errors)

    async def fn() -> str:
        calls.append(1)
        if queue:
            raise queue.pop(0)
        return "ok"

    return calls, fn


async def test_gives_up_after_the_attempts_and_reraises_the_last_error() -> None:
    sleep = FakeSleep()
    errors = [ApiTransient(503, f"busy {n}") for n in range(6)]
    calls, fn = flaky(*errors)
    with pytest.raises(ApiTransient, match="busy 5"):
        await RetryPolicy(attempts=6).call(fn, sleep=sleep, rng=random.Random(1))  # type: ignore[arg-type]
    assert len(calls) == 6
    assert len(sleep.delays) == 5


async def test_backoff_grows_with_jitter_and_is_capped() -> None:
    sleep = FakeSleep()
    _, fn = flaky(*[ApiUnreachable("refused", maybe_sent=False) for _ in range(7)])
    policy = RetryPolicy(attempts=8, base=0.5, cap=8.0)
    assert await policy.call(fn, sleep=sleep, rng=random.Random(7)) == "ok"  # type: ignore[arg-type]
    ceilings = [0.5, 1, 2, 4, 8, 8, 8]
    assert len(sleep.delays) == 7
    for delay, ceiling in zip(sleep.delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling


async def test_retry_after_is_honoured_and_capped() -> None:
    sleep = FakeSleep()
    _, fn = flaky(
        ApiTransient(429, "slow down", retry_after=3.0),
        ApiTransient(503, "later", retry_after=86_400.0),
    )
    await RetryPolicy(retry_after_cap=60).call(fn, sleep=sleep)  # type: ignore[arg-type]
    assert sleep.delays == [3.0, 60.0]


async def test_rejected_requests_are_never_retried() -> None:
    sleep = FakeSleep()
    calls, fn = flaky(ApiRejected(400, "width must be a multiple of 16"))
    with pytest.raises(ApiRejected):
        await RetryPolicy().call(fn, sleep=sleep)  # type: ignore[arg-type]
    assert len(calls) == 1
    assert sleep.delays == []


async def test_slow_start_grows_per_accepted_submission_up_to_the_ceiling() -> None:
    limit = AdaptiveLimit(ceiling=5, start=2)
    for _ in range(10):
        await limit.accepted()
    assert limit.limit == 5


async def test_parallel_cap_rejection_sets_the_window_to_the_jobs_in_flight() -> None:
    limit = AdaptiveLimit(ceiling=100, start=100)
    for _ in range(21):
        await limit.acquire()
    await limit.rejected()  # the 21st submission got the 429
    assert limit.limit == 20
    assert limit.cap_seen == 20
    await limit.release(completed=False)  # the rejected one gives its slot back
    assert limit.in_flight == 20
    waiter = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()  # full at the cap
    await limit.release(completed=True)
    await asyncio.wait_for(waiter, 1)
    assert limit.in_flight == 20


async def test_probes_upwards_after_a_run_of_completions_and_backs_off_after_a_failed_probe() -> (
    None
):
    limit = AdaptiveLimit(ceiling=100, start=100)
    for _ in range(11):
        await limit.acquire()
    await limit.rejected()
    await limit.release(completed=False)
    assert limit.limit == 10
    for _ in range(10):  # ten completions at the cap: probe one step up
        await limit.release(completed=True)
        await limit.acquire()
    assert limit.limit == 11
    await limit.acquire()
    await limit.rejected()  # the probe failed: back to 10, and the next probe waits twice as long
    await limit.release(completed=False)
    assert limit.limit == 10
    for _ in range(19):
        await limit.release(completed=True)
        await limit.acquire()
    assert limit.limit == 10
    await limit.release(completed=True)
    assert limit.limit == 11
    assert limit.rejections == 2


def test_first_poll_lands_when_jobs_usually_finish_then_backs_off_with_age() -> None:
    clock = PollClock(first=1.0)
    assert clock.next_delay(0.0) == pytest.approx(1.02)
    for _ in range(5):
        clock.observe(3.0)
    assert clock.next_delay(0.0) == pytest.approx(3.02)
    assert clock.next_delay(3.5) == pytest.approx(0.875)
    assert clock.next_delay(100.0) == 10.0
    assert clock.next_delay(3.01) == pytest.approx(0.7525)


def test_progress_aims_the_next_poll_at_the_expected_end() -> None:
    clock = PollClock(first=1.0)
    # 90% done at 8 s: about 0.9 s left, sooner than the age-based 2 s
    assert clock.next_delay(8.0, progress=0.9) == pytest.approx(8 / 0.9 - 8 + 0.02)
    # progress only brings a poll forward: never past the age-based fallback
    assert clock.next_delay(1.0, progress=0.5) == pytest.approx(0.25)
    assert clock.next_delay(8.0, progress=0.0) == pytest.approx(2.0)
    # a progress stuck near 1 cannot make it poll in a tight loop
    assert clock.next_delay(8.0, progress=0.999) == pytest.approx(0.4)


def test_how_progress_maps_to_run_time_is_learnt_from_finished_jobs() -> None:
    naive = PollClock(first=1.0)
    learnt = PollClock(first=1.0)
    # an API whose progress runs ahead of time: share of run time = 0.1 + 0.8 x progress
    for progress in (0.2, 0.4, 0.6, 0.3, 0.5):
        learnt.observe(10.0, seen=[((0.1 + 0.8 * progress) * 10.0, progress)])
    # at 40 s a job reporting 0.9 has 0.82 of its run behind it: about 8.8 s left, not 4.4
    assert naive.next_delay(40.0, progress=0.9) == pytest.approx(40 / 0.9 - 40 + 0.02)
    assert learnt.next_delay(40.0, progress=0.9) == pytest.approx(40 / 0.82 - 40 + 0.02)


# --- the spending limit -----------------------------------------------------------------------


def test_a_request_reserves_its_estimate_until_answered_then_is_charged_what_was_billed() -> None:
    spending = Spending(25.0, {"a": 10.0, "b": 10.0, "c": 10.0})
    a, b = spending.reserve("a"), spending.reserve("b")
    assert (a, b) == (10.0, 10.0)
    with pytest.raises(BudgetReached, match=r"20 of the budget of 25 .* its 10 would pass it"):
        spending.reserve("c")  # both still out: their estimates count
    spending.release(a)
    spending.paid("a", 4.0)  # billed less than estimated
    spending.release(b)
    spending.paid("b", None)  # no figure in the answer: the estimate
    assert spending.spent == 14.0
    assert spending.reserve("c") == 10.0


def test_resends_in_flight_do_not_count_each_other_twice() -> None:
    """Two answers lost (maybe paid, 20 of 20): both resends fit, each replacing its own charge;
    the reliability suite found them blocking each other (charge and reservation both counted)."""
    spending = Spending(20.0, {"a": 10.0, "b": 10.0, "c": 10.0})
    for fingerprint in "ab":
        spending.release(spending.reserve(fingerprint))
        spending.unknown(fingerprint)
    assert spending.spent == 20.0
    again = [spending.reserve(fingerprint, maybe_paid=True) for fingerprint in "ab"]
    assert again == [0.0, 0.0]
    with pytest.raises(BudgetReached, match="not started"):
        spending.reserve("c")
    for fingerprint, units in zip("ab", again, strict=True):
        spending.release(units)
        spending.paid(fingerprint, 10.0)
    assert spending.spent == 20.0


def test_without_an_estimate_nothing_is_sent_under_a_budget_and_everything_without_one() -> None:
    with pytest.raises(BudgetReached, match="could not be priced"):
        Spending(100.0, {}).reserve("a")
    free = Spending(None, {})
    assert free.reserve("a") == 0.0
    free.unknown("a")
    free.paid("b", 7.0)
    assert free.spent == 7.0


def test_a_bill_above_its_estimate_raises_what_later_requests_hold() -> None:
    """A tier change or a surcharge: after one job billed twice its estimate, the next ones are
    held at twice theirs, so the run stops before the bills pass the budget."""
    spending = Spending(50.0, {"a": 10.0, "b": 10.0, "c": 10.0})
    spending.release(spending.reserve("a"))
    spending.paid("a", 20.0)
    assert spending.reserve("b") == 20.0
    with pytest.raises(BudgetReached):
        spending.reserve("c")  # 20 paid, 20 held: another 20 would pass 50
    spending.price("d", 5.0)  # a price learnt during the run (a step's dry run)
    assert spending.estimates["d"] == 5.0


# --- requests that must take effect at most once ---------------------------------------------


async def test_send_once_looks_for_a_lost_answer_before_sending_again() -> None:
    sleep = FakeSleep()
    sent: list[int] = []
    looked: list[int] = []

    async def send() -> str:
        sent.append(1)
        raise ApiUnreachable("no answer", maybe_sent=True)

    async def find() -> str | None:
        looked.append(1)
        return "asset_1" if len(looked) == 2 else None

    found = await RetryPolicy(attempts=5).send_once(send, find, sleep=sleep, rng=random.Random(1))
    assert found == "asset_1"
    assert len(sent) == 2 and len(looked) == 2  # never sent while it may have worked unseen
    assert len(sleep.delays) == 2


async def test_send_once_resends_what_never_left_and_gives_up_on_a_refusal() -> None:
    looked: list[int] = []

    async def find() -> str | None:
        looked.append(1)
        return None

    calls, fn = flaky(ApiUnreachable("refused", maybe_sent=False), ApiTransient(503, "busy"))
    policy = RetryPolicy(attempts=5)
    assert await policy.send_once(fn, find, sleep=FakeSleep(), rng=random.Random(1)) == "ok"  # type: ignore[arg-type]
    assert len(calls) == 3 and looked == [1]  # the 503 may have been sent: looked for once
    _, refused = flaky(ApiRejected(400, "bad image"))
    with pytest.raises(ApiRejected):
        await policy.send_once(refused, find, sleep=FakeSleep())  # type: ignore[arg-type]
