"""Run: turn the pending part of a plan into files, as fast as the account allows, paying once.

One task per item; a failed item never stops the others. For an item to generate:
  pre-flight   the body is checked against the model's input schema (cached per run)
  submit       intent on disk -> POST -> job id on disk (journal.py). A job already in the journal
               is re-attached, not paid again. An unknown outcome (no response after sending, 408,
               5xx) is reconciled against GET /jobs before the request is ever sent again.
  follow       polls at the PollClock's pace until success, failure or the deadline; the slot on
               the adaptive jobs-in-flight limit is held from submission to a terminal status
  collect      GET /assets/{id}, verified download into place; a failed URL is resolved again
               (collect.py's Collector, which also restores missing items)
  commit       the item's lock entry joins the lockfile at the next flush (every few hundred ms and
               at the end); only then is its intent forgotten, so a crash in between costs a
               re-download, never a new generation
A missing item is restored instead: a moved one from its old file, others from the locked asset
ids (the local backend keeps no remote copies, so there regenerating is the restore).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pipeline.client import ApiClient
from pipeline.collect import MAX_DOWNLOAD_BYTES, Collector, copy_output
from pipeline.errors import (
    ApiError,
    ApiRejected,
    ApiTransient,
    ApiUnreachable,
    BudgetReached,
    InvalidInput,
    JobFailed,
    JobTimedOut,
    LockfileError,
    PipelineError,
    WriteError,
)
from pipeline.files import sweep_temp_files
from pipeline.journal import Intent, Journal
from pipeline.limits import AdaptiveLimit, PollClock, RetryPolicy, Spending
from pipeline.lockfile import LockEntry, Lockfile, OutputRecord, write_lock
from pipeline.manifest import Item
from pipeline.plan import Plan, PlanEntry, State
from pipeline.report import Event, ItemResult, Outcome, RunReport
from pipeline.request import ModelSchemas, build_body
from pipeline.state import StatCache
from pipeline.wire import GenerateResult, Job

T = TypeVar("T")
_TERMINAL_FAILURES = frozenset({"failure", "canceled"})
_MAX_CAP_REJECTIONS = 200  # 429 parallel-custom-jobs for one item before it gives up


@dataclass(frozen=True)
class RunOptions:
    ceiling: int = 8
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    job_deadline: float = 1800.0
    grace: float = 10.0
    max_bytes: int = MAX_DOWNLOAD_BYTES
    flush_interval: float = 0.25
    restore_by_regenerating: bool = False  # the in-process local backend keeps no assets:
    # regenerating is its restore, and its asset ids mean nothing after the run, so none are locked
    reconcile_margin: float = 60.0  # clock skew allowed between us and the API
    force: bool = False
    first_poll: float = 1.0  # the first guess at how long a job takes, before any is seen
    budget: float | None = None  # creative units this run may spend; None: no limit
    estimates: Mapping[str, float] = field(default_factory=dict)  # fingerprint -> dry-run units


@dataclass(frozen=True)
class RunPaths:
    lockfile: Path
    output: Path
    state: Path


class _Interrupted(Exception):
    """Raised inside an item task when the run stops submitting."""


class Runner:
    """Runs one plan. Create it, `await run()`; `interrupt()` (first Ctrl-C) stops submitting."""

    def __init__(
        self,
        client: ApiClient,
        plan: Plan,
        lock: Lockfile,
        paths: RunPaths,
        *,
        options: RunOptions | None = None,
        stat_cache: StatCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_event: Callable[[Event], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.plan = plan
        self.lock = lock
        self.paths = paths
        self.options = options or RunOptions()
        self.stat_cache = stat_cache or StatCache()
        self.clock, self.wall, self.sleep = clock, wall, sleep
        self.on_event = on_event or (lambda event: None)
        self.rng = rng or random.Random()
        self.limit = AdaptiveLimit(self.options.ceiling)
        self.polls = PollClock(first=self.options.first_poll)
        self.journal = Journal(paths.state, enabled=not self.options.restore_by_regenerating)
        if not self.options.force:  # with --force, a paid job for a locked item is the new one
            self.journal.settle({entry.fingerprint for entry in lock.items.values()})
        self._intents = self.journal.load()
        self._claimed = {intent.job_id for intent in self._intents.values() if intent.job_id}
        self.schemas = ModelSchemas(lambda model: self._call(lambda: client.get_model(model)))
        self._same: dict[str, asyncio.Future[list[OutputRecord]]] = {}
        self._stopping = False
        self._dirty = False
        self._forget: list[tuple[str, str]] = []  # (fingerprint, job id) safe in the lock
        self.spending = Spending(self.options.budget, self.options.estimates)
        self.collector = Collector(
            client,
            paths.output,
            retry=self.options.retry,
            deadline=self.options.job_deadline,
            max_bytes=self.options.max_bytes,
            sleep=self.sleep,
            rng=self.rng,
        )

    # --- the run ------------------------------------------------------------------------------

    def work(self) -> list[PlanEntry]:
        """The entries this run acts on: pending ones, and with `force` the unchanged too."""
        wanted = {State.NEW, State.CHANGED, State.MISSING}
        if self.options.force:
            wanted.add(State.UNCHANGED)
        return [entry for entry in self.plan.entries if entry.state in wanted]

    async def run(self) -> RunReport:
        started = self.clock()
        for name, (stat, digest) in self.plan.hashed.items():
            self.stat_cache.remember(name, stat, digest)
        work = self.work()
        sweep_temp_files(self.paths.output, self.paths.lockfile, self.paths.state)
        flusher = asyncio.create_task(self._flush_periodically())
        tasks = [asyncio.create_task(self._one(entry)) for entry in work]
        try:
            results = list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            flusher.cancel()
            self.flush()
        return RunReport(
            results=results,
            unchanged=self.plan.count(State.UNCHANGED)
            - sum(e.state is State.UNCHANGED for e in work),
            orphaned=self.plan.count(State.ORPHANED),
            seconds=self.clock() - started,
            interrupted=self._stopping,
            spent=self.spending.spent,
        )

    @property
    def stopping(self) -> bool:
        """True once `interrupt()` was called."""
        return self._stopping

    def interrupt(self) -> None:
        """Stop submitting; jobs already in flight are still followed and collected."""
        self._stopping = True

    def flush(self) -> None:
        """Write the lock if anything finished, then forget the intents it now covers."""
        if self._dirty:
            write_lock(self.paths.lockfile, self.lock)
            self._dirty = False
        for fingerprint, job_id in self._forget:
            self.journal.forget(fingerprint, job_id)
        self._forget.clear()
        self.stat_cache.save(self.paths.state)

    async def _flush_periodically(self) -> None:
        while True:
            await self.sleep(self.options.flush_interval)
            # a full or read-only disk: tried again next time, and reported by the last flush
            with contextlib.suppress(LockfileError, OSError):
                self.flush()

    async def _one(self, entry: PlanEntry) -> ItemResult:
        result = ItemResult(entry.key, Outcome.FAILED)
        job_id: str | None = None
        try:
            if entry.state is State.MISSING and not self.options.restore_by_regenerating:
                assert entry.item is not None and entry.locked is not None
                result.attempts += len(entry.locked.outputs)
                records = await self.collector.restore(
                    entry.item, entry.locked.outputs, moved=entry.moved_from is not None
                )
                outcome = Outcome.RESTORED
            else:
                job_id, records = await self._generate_once(entry, result)
                outcome = Outcome.RESTORED if entry.state is State.MISSING else Outcome.GENERATED
            self._commit(entry, records, job_id)
        except _Interrupted:
            result.outcome = Outcome.SKIPPED
            return result
        except BudgetReached as exc:
            result.outcome, result.error = Outcome.SKIPPED, exc
            self.on_event(Event("skipped", entry.key, str(exc)))
            return result
        except OSError as exc:  # the disk, not the API: this item fails, the others go on
            result.error = WriteError(exc)
            self.on_event(Event("failed", entry.key, str(result.error)))
            return result
        except PipelineError as exc:
            result.error = exc
            self.on_event(Event("failed", entry.key, str(exc)))
            return result
        result.outcome = outcome
        result.files = [record.file for record in records]
        self.on_event(Event(outcome.value, entry.key, f"{len(records)} file(s)"))
        return result

    # --- generating ---------------------------------------------------------------------------

    async def _generate_once(
        self, entry: PlanEntry, result: ItemResult
    ) -> tuple[str | None, list[OutputRecord]]:
        """Items with the same fingerprint share one paid generation; the others copy its files.

        Returns the job id (None for a copy: the job and its intent belong to the first item).
        """
        assert entry.item is not None and entry.fingerprint is not None
        first = self._same.get(entry.fingerprint)
        if first is None:
            future: asyncio.Future[list[OutputRecord]] = asyncio.get_running_loop().create_future()
            self._same[entry.fingerprint] = future
            try:
                job_id, records = await self._generate(entry, entry.item, entry.fingerprint, result)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # the twins re-raise it; nobody else must see it unretrieved
                raise
            future.set_result(records)
            return job_id, records
        source = await asyncio.shield(first)
        return None, [
            copy_output(
                self.paths.output / record.file,
                self.collector.target(entry.item, index, record.file),
                record,
            )
            for index, record in enumerate(source)
        ]

    async def _generate(
        self, entry: PlanEntry, item: Item, fingerprint: str, result: ItemResult
    ) -> tuple[str, list[OutputRecord]]:
        model = await self.schemas.of(item)
        body, problems = build_body(item, model)
        if problems:
            raise InvalidInput(problems)
        job_id = await self._submit(entry, item, fingerprint, body, result)
        finished = False
        try:
            job = await self._follow(job_id, fingerprint)
            finished = True
        except JobFailed:
            finished = True
            self.journal.forget(fingerprint, job_id)  # a failed job is over; rerun afresh
            raise
        finally:
            await self.limit.release(completed=finished)
        return job_id, await self.collector.collect(item, job)

    async def _submit(
        self,
        entry: PlanEntry,
        item: Item,
        fingerprint: str,
        body: Mapping[str, Any],
        result: ItemResult,
    ) -> str:
        """A job id for this request, paid at most once; returns holding a slot on the limit."""
        intent = self._intents.pop(fingerprint, None)  # this item owns it from now on
        if intent is not None and intent.body != body:
            intent = None  # an intent for other inputs (e.g. a new pipeline version): not ours
        maybe_paid = intent is not None  # a previous run may have sent it
        if intent is not None:
            found = intent.job_id
            if found is not None and not await self._job_exists(found):
                found = None  # the API has no such job (an emulator restarted): none to attach
            found = found or await self._reconcile(intent)
            if found is not None:
                return await self._attach(entry, intent, found)
        intent = intent or Intent(fingerprint, entry.key, item.model, dict(body), self._now_iso())
        rejections = 0
        while True:
            await self.limit.acquire()
            if self._stopping:
                await self.limit.release(completed=False)
                raise _Interrupted
            try:
                reserved = self.spending.reserve(fingerprint, maybe_paid=maybe_paid)
            except BudgetReached:
                await self.limit.release(completed=False)
                raise
            try:
                reply = await self._send(intent, body, reserved, result, maybe_paid=maybe_paid)
            except _Interrupted:
                await self.limit.release(completed=False)
                raise
            except ApiTransient as exc:
                await self.limit.release(completed=False)
                if exc.parallel_limit and rejections < _MAX_CAP_REJECTIONS:
                    rejections += 1
                    result.attempts -= 1
                    await self.limit.rejected()
                    if self.limit.in_flight == 0:
                        await self.sleep(self.options.retry.delay(1, exc, self.rng))
                    continue
                maybe_paid = maybe_paid or exc.maybe_sent
                found = await self._after_failure(entry, intent, exc, result)
            except ApiUnreachable as exc:
                await self.limit.release(completed=False)
                maybe_paid = maybe_paid or exc.maybe_sent
                found = await self._after_failure(entry, intent, exc, result)
            except ApiRejected as exc:
                await self.limit.release(completed=False)
                if not maybe_paid and exc.status < 500:
                    self.journal.forget(fingerprint)  # refused, and never maybe sent: nothing paid
                raise
            except BaseException:
                await self.limit.release(completed=False)  # outcome unknown: the intent stays
                raise
            else:
                if reply.job is None:
                    await self.limit.release(completed=False)
                    raise ApiTransient(200, "the API answered without a job", method="POST")
                job_id = reply.job.job_id
                self._claimed.add(job_id)
                self.journal.attach(intent, job_id)
                await self.limit.accepted()
                self.on_event(Event("submitted", entry.key, job_id))
                return job_id
            if found is not None:
                return await self._attach(entry, intent, found)

    async def _send(
        self,
        intent: Intent,
        body: Mapping[str, Any],
        reserved: float,
        result: ItemResult,
        *,
        maybe_paid: bool,
    ) -> GenerateResult:
        """The intent on disk, then the paid POST, holding `reserved` units of the budget until
        the answer; the job is charged as the API bills it, or the estimate when the answer is
        lost (it may have been paid)."""
        fingerprint = intent.fingerprint
        try:
            await asyncio.to_thread(self.journal.write, intent)  # its fsync spares the loop
            if self._stopping:  # stopped while the intent was being written: nothing was sent
                if not maybe_paid:
                    self.journal.forget(fingerprint)
                raise _Interrupted
            result.attempts += 1
            try:
                reply = await self.client.generate(intent.model, body)
            except (ApiTransient, ApiUnreachable) as exc:
                if exc.maybe_sent:
                    self.spending.unknown(fingerprint)
                raise
            except asyncio.CancelledError:  # quit with the request out: it may have been paid
                self.spending.unknown(fingerprint)
                raise
        finally:
            self.spending.release(reserved)
        self.spending.paid(fingerprint, reply.cost.creative_units_cost)
        return reply

    async def _attach(self, entry: PlanEntry, intent: Intent, job_id: str) -> str:
        """Follow an existing job instead of paying for a new one; returns holding a slot."""
        self._claimed.add(job_id)
        await self.limit.acquire()
        if intent.job_id != job_id:
            self.journal.attach(intent, job_id)
        await self.limit.accepted()
        self.on_event(Event("attached", entry.key, job_id))
        return job_id

    async def _job_exists(self, job_id: str) -> bool:
        try:
            await self._call(lambda: self.client.get_job(job_id))
        except ApiRejected as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def _after_failure(
        self, entry: PlanEntry, intent: Intent, exc: ApiError, result: ItemResult
    ) -> str | None:
        """Wait as the policy says; if the request may have gone through, look for its job."""
        maybe_sent = isinstance(exc, ApiUnreachable | ApiTransient) and exc.maybe_sent
        if result.attempts >= self.options.retry.attempts:
            found = await self._reconcile(intent) if maybe_sent else None
            if found is None:
                raise exc
            return found
        delay = self.options.retry.delay(result.attempts, exc, self.rng)
        self.on_event(Event("retry", entry.key, f"{exc} (again in {delay:.1f}s)"))
        await self.sleep(delay)
        return await self._reconcile(intent) if maybe_sent else None

    async def _reconcile(self, intent: Intent) -> str | None:
        """The id of a job made from exactly this intent's request, if the API has one.

        A match has the same inputs, was created after the intent (less a clock-skew margin),
        is not claimed by another item, and did not fail; the earliest such job wins.
        """
        written = datetime.fromisoformat(intent.created_at)
        since = written - timedelta(seconds=self.options.reconcile_margin)
        after = since.strftime("%Y-%m-%dT%H:%M:%S.000Z")

        matches: list[Job] = []
        token: str | None = None
        while True:  # page by page, each retried on its own: a fault resumes at its page
            fetch_page = functools.partial(self.client.list_jobs_page, token, created_after=after)
            jobs, token = await self._call(fetch_page)
            matches += [
                job
                for job in jobs
                if job.job_type == "custom"
                and job.status not in _TERMINAL_FAILURES
                and job.job_id not in self._claimed
                and job.metadata.input == intent.body
            ]
            if token is None:
                break
        matches.sort(key=lambda job: job.created_at)
        return matches[0].job_id if matches else None

    async def _follow(self, job_id: str, fingerprint: str) -> Job:
        """Poll until the job is terminal; failures carry the API's error and hint. A job this
        run paid for is charged what its billing finally says (a refund included)."""
        started = self.clock()
        status = "queued"
        progress: float | None = None
        seen: list[tuple[float, float]] = []  # (age, progress) of each poll before the end
        while True:
            age = self.clock() - started
            remaining = self.options.job_deadline - age
            if remaining <= 0:
                raise JobTimedOut(job_id, status, age)
            await self.sleep(min(self.polls.next_delay(age, progress), remaining))
            job = await self._call(lambda: self.client.get_job(job_id))
            status, progress = job.status, job.progress
            terminal = job.status == "success" or job.status in _TERMINAL_FAILURES
            if terminal and job.billing is not None:  # only then final: a refund, a surcharge
                self.spending.billed(fingerprint, job.billing.cu_cost)
            if job.status == "success":
                elapsed, run = self.clock() - started, job.run_seconds
                if run is None:
                    self.polls.observe(elapsed)
                else:  # a job re-attached after a restart began before `started`: ages are off
                    self.polls.observe(run, seen if elapsed >= 0.9 * run else ())
                return job
            seen.append((self.clock() - started, job.progress))
            if job.status in _TERMINAL_FAILURES:
                raise JobFailed(
                    job_id, job.status, job.metadata.error or "", job.metadata.hint or ""
                )

    def _commit(
        self, entry: PlanEntry, records: Sequence[OutputRecord], job_id: str | None
    ) -> None:
        """The item is done: its lock entry joins the next flush; stale files of it go."""
        assert entry.item is not None and entry.fingerprint is not None
        old = self.lock.items.get(entry.moved_from or entry.key)
        kept = {record.file for record in records}
        if old is not None:
            for record in old.outputs:
                if record.file not in kept:
                    (self.paths.output / record.file).unlink(missing_ok=True)
        if entry.moved_from:
            self.lock.items.pop(entry.moved_from, None)
        if self.options.restore_by_regenerating:
            records = [replace(record, asset_id=None) for record in records]
        for record in records:
            path = self.paths.output / record.file
            self.stat_cache.remember(record.file, path.stat(), record.sha256)
        self.lock.items[entry.key] = LockEntry(
            fingerprint=entry.fingerprint,
            request=dict(entry.request or {}),
            seed_derived=entry.item.seed_derived,
            outputs=tuple(records),
        )
        self._dirty = True
        if job_id is not None:
            self._forget.append((entry.fingerprint, job_id))

    # --- helpers ------------------------------------------------------------------------------

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """An idempotent call (reads) under the retry policy."""
        return await self.options.retry.call(fn, sleep=self.sleep, rng=self.rng)

    def _now_iso(self) -> str:
        return datetime.fromtimestamp(self.wall(), UTC).isoformat()
