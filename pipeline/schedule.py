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

The full workflow adds stages around that, each cached and paid once like a generation:
  inputs       local files (`image`, `referenceImages`) uploaded once each (uploads.py)
  trainings    the `train:` models the plan lacks, started first; an item using one waits for
               it, the others go on meanwhile (training.py)
  then         each post-processing step a paid job per output, on the previous stage's result,
               journalled under `<stage fingerprint>.<output>`; a changed step starts from the
               last stage the lock holds (`PlanEntry.resume`)
  caption      `POST /generate/caption` for the final outputs (`caption: true`)
  collections  after the items, each remote collection gets the outputs it lacks, 49 at a time
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
from pipeline.collect import MAX_DOWNLOAD_BYTES, Collector, copy_output, job_assets
from pipeline.errors import (
    ApiError,
    ApiRejected,
    ApiTransient,
    ApiUnreachable,
    BudgetReached,
    DownloadError,
    InvalidInput,
    JobFailed,
    JobTimedOut,
    LockfileError,
    PipelineError,
    WriteError,
)
from pipeline.files import sweep_temp_files
from pipeline.journal import Intent, Journal, adopt_uploads
from pipeline.limits import AdaptiveLimit, PollClock, RetryPolicy, Spending, together
from pipeline.lockfile import LockEntry, Lockfile, OutputRecord, StageRecord, write_lock
from pipeline.manifest import Item
from pipeline.plan import CollectionSync, Plan, PlanEntry, State
from pipeline.report import Event, ItemResult, Outcome, RunReport
from pipeline.request import ModelSchemas, build_body, build_step_body
from pipeline.state import StatCache
from pipeline.training import Trainings
from pipeline.uploads import Uploads
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
    poll_floor: float = 0.25  # the shortest wait between two polls of a job
    budget: float | None = None  # creative units this run may spend; None: no limit
    estimates: Mapping[str, float] = field(default_factory=dict)  # fingerprint -> dry-run units
    training_deadline: float = 4 * 3600.0  # seconds a training may take from its start
    first_training_poll: float = 1.0  # then longer (PollClock), up to 30 s between polls


@dataclass(frozen=True)
class RunPaths:
    lockfile: Path
    output: Path
    state: Path
    root: Path | None = None  # where manifests' input paths start; None: the lock's folder

    @property
    def project(self) -> Path:
        return self.root if self.root is not None else self.lockfile.parent


class _Interrupted(Exception):
    """Raised inside an item task when the run stops submitting."""


@dataclass
class _Made:
    """What an item's work produced, for its lock entry."""

    outputs: list[OutputRecord]
    stages: tuple[StageRecord, ...] = ()
    paid: list[tuple[str, str]] = field(default_factory=list)  # (journal key, job id)
    reused: bool = False  # every stage was already made: a restore, not a generation


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
        self.polls = PollClock(first=self.options.first_poll, floor=self.options.poll_floor)
        self.journal = Journal(paths.state, enabled=not self.options.restore_by_regenerating)
        if not self.options.force:  # with --force, a paid job for a locked item is the new one
            if self.journal.enabled and adopt_uploads(self.journal, lock):
                write_lock(paths.lockfile, lock)  # before their intents go (settle)
            self.journal.settle(lock)
        self._intents = self.journal.load()
        self._claimed = {intent.job_id for intent in self._intents.values() if intent.job_id}
        self.schemas = ModelSchemas(lambda model: self._call(lambda: client.get_model(model)))
        self._same: dict[str, asyncio.Future[_Made]] = {}
        self._jobs: dict[str, asyncio.Future[Job]] = {}  # by journal key: one job per request
        self._stopping = False
        self._dirty = False
        self._forget: list[tuple[str, str]] = []  # (fingerprint, job id) safe in the lock
        self._stale: dict[str, list[str]] = {}  # remote collection -> assets of replaced outputs
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
        remote = not self.options.restore_by_regenerating  # the API keeps what we make
        self.uploads = Uploads(
            client,
            paths.project,
            lock,
            self.journal,
            self._intents,
            retry=self.options.retry,
            sleep=self.sleep,
            rng=self.rng,
            now=self._now_iso,
            saved=self._saved,
            cache=remote,
            margin=self.options.reconcile_margin,
        )
        self.training_polls = PollClock(
            first=self.options.first_training_poll, floor=self.options.poll_floor, ceiling=30.0
        )
        self.trainings = Trainings(
            client,
            {entry.name: entry for entry in plan.trainings},
            lock,
            self.journal,
            self._intents,
            self.uploads,
            self.spending,
            retry=self.options.retry,
            sleep=self.sleep,
            rng=self.rng,
            now=self._now_iso,
            saved=self._saved,
            follow=functools.partial(
                self._follow, polls=self.training_polls, deadline=self.options.training_deadline
            ),
            on_event=lambda event: self.on_event(event),  # the runner's, even if replaced
            cache=remote,
            stopping=lambda: self._stopping,
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
        if not self._stopping:
            self.trainings.start([entry.name for entry in self.plan.new_trainings])
        tasks = [asyncio.create_task(self._one(entry)) for entry in work]
        try:
            results = list(await asyncio.gather(*tasks))
            trainings = await self._training_results()
            if not self._stopping:
                results += await self._sync_collections()
                with contextlib.suppress(PipelineError):  # tidying: tried again next run
                    await self.uploads.settle_rest()
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
            trainings=trainings,
        )

    async def _training_results(self) -> list[ItemResult]:
        results = []
        for name, error in (await self.trainings.wait()).items():
            key = f"train/{name}"
            if error is None:
                results.append(ItemResult(key, Outcome.GENERATED))
            elif isinstance(error, BudgetReached):
                results.append(ItemResult(key, Outcome.SKIPPED, error=error))
            elif isinstance(error, PipelineError):
                results.append(ItemResult(key, Outcome.FAILED, error=error))
                self.on_event(Event("failed", key, str(error)))
            else:
                raise error
        return results

    @property
    def stopping(self) -> bool:
        """True once `interrupt()` was called."""
        return self._stopping

    def interrupt(self) -> None:
        """Stop submitting; jobs already in flight are still followed and collected."""
        self._stopping = True

    def _saved(self, key: str, value: str) -> None:
        """An upload or a training is in the lock: write it at the next flush, then forget its
        intent (`value` is the id the intent holds)."""
        self._dirty = True
        self._forget.append((key, value))

    def flush(self) -> None:
        """Write the lock if anything finished, then forget the intents it now covers."""
        if self._dirty:
            write_lock(self.paths.lockfile, self.lock)
            self._dirty = False
        for fingerprint, job_id in self._forget:
            self.journal.forget(fingerprint, job_id or None)
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
        try:
            if entry.state is State.MISSING and not self.options.restore_by_regenerating:
                assert entry.item is not None and entry.locked is not None
                result.attempts += len(entry.locked.files())
                made = await self._restore(entry, entry.item, entry.locked, result)
                outcome = Outcome.RESTORED
            else:
                made = await self._generate_once(entry, result)
                restored = entry.state is State.MISSING or made.reused
                outcome = Outcome.RESTORED if restored else Outcome.GENERATED
            self._commit(entry, made)
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
        result.files = [record.file for record in made.outputs]
        self.on_event(Event(outcome.value, entry.key, f"{len(made.outputs)} file(s)"))
        return result

    async def _restore(
        self, entry: PlanEntry, item: Item, locked: LockEntry, result: ItemResult
    ) -> _Made:
        """A missing item's files back from the lock, kept intermediate results included (and
        captioned, if captions were asked for since)."""
        moved = entry.moved_from is not None
        outputs = await self.collector.restore(item, locked.outputs, moved=moved)
        stages = []
        for k, stage in enumerate(locked.stages):
            step = item.steps[k - 1] if 0 < k <= len(item.steps) else None
            kept: tuple[OutputRecord, ...] = ()  # a step no longer kept: its file goes
            if step is not None and step.keep:
                if len(stage.kept) == item.outputs:
                    kept = tuple(
                        await self.collector.restore(item, stage.kept, moved=moved, step=step.name)
                    )
                elif len(stage.asset_ids) == item.outputs:
                    kept = tuple(await self.collector.collect_ids(item, stage.asset_ids, step.name))
                else:
                    raise DownloadError("?", f"then[{k - 1}] ({step.name}) has no asset to keep")
            stages.append(replace(stage, kept=kept))
        made = _Made(outputs, tuple(stages))
        ids = [record.asset_id or "" for record in outputs]
        if all(ids):
            await self._caption_outputs(entry, item, made, ids, result)
        return made

    # --- generating ---------------------------------------------------------------------------

    async def _generate_once(self, entry: PlanEntry, result: ItemResult) -> _Made:
        """Items with the same fingerprint share one paid generation; the others copy its files.

        A copy pays nothing and forgets no intent: the job and its intent belong to the first.
        """
        assert entry.item is not None and entry.fingerprint is not None
        first = self._same.get(entry.fingerprint)
        if first is None:
            future: asyncio.Future[_Made] = asyncio.get_running_loop().create_future()
            self._same[entry.fingerprint] = future
            try:
                made = await self._generate(entry, entry.item, result)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # the twins re-raise it; nobody else must see it unretrieved
                raise
            future.set_result(made)
            return made
        source = await asyncio.shield(first)
        item = entry.item
        outputs = [
            copy_output(
                self.paths.output / record.file,
                self.collector.target(item, index, record.file),
                record,
            )
            for index, record in enumerate(source.outputs)
        ]
        stages = []
        for k, stage in enumerate(source.stages):
            step = item.steps[k - 1].name if k else None
            kept = tuple(
                copy_output(
                    self.paths.output / record.file,
                    self.collector.target(item, index, record.file, step),
                    record,
                )
                for index, record in enumerate(stage.kept)
            )
            stages.append(replace(stage, kept=kept))
        return _Made(outputs, tuple(stages))

    async def _generate(self, entry: PlanEntry, item: Item, result: ItemResult) -> _Made:
        """Every stage after those already made (`entry.resume`: this item's locked stages, or
        another item's): the generation, each `then:` step on the one before, the final outputs
        downloaded, captioned when asked. Every step is checked before anything is paid."""
        stages = entry.stages or (entry.fingerprint or "",)
        locked = entry.locked
        start = 0 if self.options.force else min(entry.resume, len(stages), len(entry.reuse))
        await self._check_steps(item, max(start, 1))
        made = _Made([])
        records: list[StageRecord] = []
        ids: list[str] = []
        last = len(stages) - 1
        for k, fingerprint in enumerate(stages):
            reused = k < start
            if reused:
                ids = list(entry.reuse[k])
            elif k == 0:
                ids = await self._generation(entry, item, fingerprint, result, made)
            else:
                ids = await self._step(entry, item, k - 1, fingerprint, ids, result, made)
            if k == last:
                break
            step = item.steps[k - 1] if k else None
            kept: tuple[OutputRecord, ...] = ()
            if step is not None and step.keep:
                same = (  # this item's own locked stage, not another item's
                    locked is not None
                    and reused
                    and k < len(locked.stages)
                    and locked.stages[k].fingerprint == fingerprint
                )
                old = locked.stages[k].kept if same and locked is not None else ()
                if same and len(old) == item.outputs and locked is not None:
                    kept = tuple(
                        await self.collector.restore(item, old, moved=False, step=step.name)
                    )
                else:
                    kept = tuple(await self.collector.collect_ids(item, ids, step.name))
            records.append(StageRecord(fingerprint, tuple(ids), kept))
        made.stages = tuple(records)
        made.reused = start > last  # nothing paid for this item's pixels
        if start > last and locked is not None and locked.fingerprint == stages[-1]:
            made.outputs = await self.collector.restore(item, locked.outputs, moved=False)
        else:
            made.outputs = await self.collector.collect_ids(item, ids)
            if start > last and len(entry.reused_captions) == len(made.outputs):
                made.outputs = [  # another item's very assets: their captions too
                    replace(record, caption=caption)
                    for record, caption in zip(made.outputs, entry.reused_captions, strict=True)
                ]
        await self._caption_outputs(entry, item, made, ids, result)
        return made

    async def _caption_outputs(
        self, entry: PlanEntry, item: Item, made: _Made, ids: Sequence[str], result: ItemResult
    ) -> None:
        """Alt text for the final outputs that lack it (`caption: true`)."""
        if item.caption and any(record.caption is None for record in made.outputs):
            captions = await self._captions(entry, ids, result)
            made.outputs = [
                replace(record, caption=caption)
                for record, caption in zip(made.outputs, captions, strict=True)
            ]

    async def _check_steps(self, item: Item, first: int) -> None:
        """The `then:` steps from stage `first` on, checked against their models' schemas
        before the first of the item's requests is paid (a step's own input stands in)."""
        problems = []
        for index in range(first - 1, len(item.steps)):
            step = item.steps[index]
            model = await self.schemas.of_model(step.model, item.locate(f"steps[{index}].model"))
            problems += build_step_body(item, index, step, model, "asset_input")[1]
        if problems:
            raise InvalidInput(problems)

    async def _generation(
        self, entry: PlanEntry, item: Item, key: str, result: ItemResult, made: _Made
    ) -> list[str]:
        """The paid generation of stage 0 (journalled under `key`); its asset ids."""
        model = await self.schemas.of(item)
        trained = {
            lora.training: await self.trainings.model_id(lora.training)
            for lora in item.loras
            if lora.training is not None
        }
        files = [file for file in (item.image, *item.reference_images) if file is not None]
        assets = {file.sha256: await self.uploads.asset_id(file) for file in files}
        body, problems = build_body(item, model, assets=assets, trained=trained)
        if problems:
            raise InvalidInput(problems)
        job = await self._paid_job(entry, item.model, key, body, result, made)
        return job_assets(item, job)

    async def _step(
        self,
        entry: PlanEntry,
        item: Item,
        index: int,
        fingerprint: str,
        inputs: Sequence[str],
        result: ItemResult,
        made: _Made,
    ) -> list[str]:
        """`then[index]` run on each output of the stage before: one paid job per output."""
        step = item.steps[index]
        model = await self.schemas.of_model(step.model, item.locate(f"steps[{index}].model"))

        async def one(n: int, image: str) -> str:
            body, problems = build_step_body(item, index, step, model, image)
            if problems:
                raise InvalidInput(problems)
            job = await self._paid_job(entry, step.model, f"{fingerprint}.{n}", body, result, made)
            return job_assets(item, job, expected=1)[0]

        return await together(one(n, image) for n, image in enumerate(inputs))

    async def _paid_job(
        self,
        entry: PlanEntry,
        model: str,
        key: str,
        body: Mapping[str, Any],
        result: ItemResult,
        made: _Made,
    ) -> Job:
        """Submit (paid at most once, under `key`) and follow one job to success. Items whose
        stage is the same request (the same key) share its one job: the first pays for it."""
        while (shared := self._jobs.get(key)) is not None:
            try:
                job = await asyncio.shield(shared)
            except asyncio.CancelledError:
                if not shared.cancelled():
                    raise  # this item itself is cancelled
                continue  # the owner was (its item stopped): this one goes on, maybe paying
            made.paid.append((key, job.job_id))  # whichever item is locked first forgets it
            return job
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._jobs[key] = future
        try:
            job = await self._pay_and_follow(entry, model, key, body, result)
        except asyncio.CancelledError:
            future.cancel()
            del self._jobs[key]
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # the sharers re-raise it; nobody else must see it unretrieved
            del self._jobs[key]  # a later item may try again
            raise
        future.set_result(job)
        made.paid.append((key, job.job_id))
        return job

    async def _pay_and_follow(
        self, entry: PlanEntry, model: str, key: str, body: Mapping[str, Any], result: ItemResult
    ) -> Job:
        job_id = await self._submit(entry, model, key, body, result)
        finished = False
        try:
            job = await self._follow(job_id, key)
            finished = True
        except JobFailed:
            finished = True
            self.journal.forget(key, job_id)  # a failed job is over; rerun afresh
            raise
        finally:
            await self.limit.release(completed=finished)
        return job

    async def _captions(
        self, entry: PlanEntry, ids: Sequence[str], result: ItemResult
    ) -> list[str]:
        """Alt text for each final output (`POST /generate/caption`), paid at most once: the
        caption job's id goes into the journal, and a lost answer is looked for among the
        caption jobs (whose output holds the text). Its intent is forgotten once the captions
        are in the lock."""
        key = f"caption-{entry.fingerprint}"
        body = {"images": list(ids)}
        intent = self._intents.pop(key, None)
        if intent is not None and intent.body == body:
            found = await self._caption_job(intent)
            if found is not None:
                return found
        if self._stopping:
            raise _Interrupted
        intent = Intent(key, entry.key, "caption", body, self._now_iso())
        if self.spending.budget is not None and key not in self.spending.estimates:
            dry = await self._call(lambda: self.client.caption(ids, dry_run=True))
            self.spending.price(key, dry.cost.creative_units_cost)
        reserved = self.spending.reserve(key)
        billed: list[float | None] = []

        async def send() -> list[str]:
            reply = await self.client.caption(ids)
            billed.append(reply.cost.creative_units_cost)
            if reply.job is not None:
                self.journal.attach(intent, reply.job.job_id)
            if len(reply.captions) != len(ids):
                raise DownloadError(ids[0], f"{len(reply.captions)} captions for {len(ids)} images")
            return reply.captions

        try:
            await asyncio.to_thread(self.journal.write, intent)
            result.attempts += 1
            captions = await self.options.retry.send_once(
                send, functools.partial(self._caption_job, intent), sleep=self.sleep, rng=self.rng
            )
        except (ApiTransient, ApiUnreachable) as exc:
            if exc.maybe_sent:
                self.spending.unknown(key)
            raise
        finally:
            self.spending.release(reserved)
            if billed:  # answered: charged as billed, even when the answer was unusable
                self.spending.paid(key, billed[-1])
        if not billed:
            self.spending.paid(key, None)  # found again: its estimate
        return captions

    async def _caption_job(self, intent: Intent) -> list[str] | None:
        """The captions of a caption job made from this intent, if the API has one."""
        job_id = intent.job_id
        if job_id is not None and not await self._job_exists(job_id):
            job_id = None
        job_id = job_id or await self._reconcile(intent, job_type="caption")
        if job_id is None:
            return None
        job = await self._call(lambda: self.client.get_job(job_id))
        output = job.metadata.output
        captions = output.get("captions") if isinstance(output, dict) else None
        if isinstance(captions, list) and all(isinstance(c, str) for c in captions):
            return list(captions)
        return None

    async def _submit(
        self,
        entry: PlanEntry,
        model: str,
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
        intent = intent or Intent(fingerprint, entry.key, model, dict(body), self._now_iso())
        if (
            self.spending.budget is not None
            and fingerprint not in self.spending.estimates
            and "." in fingerprint  # a step (`<stage>.<output>`): a generation the preview
        ):  # could not price stays unpriced. A step's input exists only now: a dry run of it
            dry = await self._call(lambda: self.client.generate(model, body, dry_run=True))
            self.spending.price(fingerprint, dry.cost.creative_units_cost)
        rejections = 0
        tries = 0  # this request's own sends (the item's total is `result.attempts`)
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
            tries += 1
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
                    tries -= 1
                    await self.limit.rejected()
                    if self.limit.in_flight == 0:
                        await self.sleep(self.options.retry.delay(1, exc, self.rng))
                    continue
                maybe_paid = maybe_paid or exc.maybe_sent
                found = await self._after_failure(entry, intent, exc, tries)
            except ApiUnreachable as exc:
                await self.limit.release(completed=False)
                maybe_paid = maybe_paid or exc.maybe_sent
                found = await self._after_failure(entry, intent, exc, tries)
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
        self, entry: PlanEntry, intent: Intent, exc: ApiError, tries: int
    ) -> str | None:
        """Wait as the policy says; if the request may have gone through, look for its job.
        `tries`: the sends of this request so far (each request of an item has the policy's
        attempts: a chain's step does not inherit the failures of the generation)."""
        maybe_sent = isinstance(exc, ApiUnreachable | ApiTransient) and exc.maybe_sent
        if tries >= self.options.retry.attempts:
            found = await self._reconcile(intent) if maybe_sent else None
            if found is None:
                raise exc
            return found
        delay = self.options.retry.delay(tries, exc, self.rng)
        self.on_event(Event("retry", entry.key, f"{exc} (again in {delay:.1f}s)"))
        await self.sleep(delay)
        return await self._reconcile(intent) if maybe_sent else None

    async def _reconcile(self, intent: Intent, job_type: str = "custom") -> str | None:
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
                if job.job_type == job_type
                and job.status not in _TERMINAL_FAILURES
                and job.job_id not in self._claimed
                and job.metadata.input == intent.body
            ]
            if token is None:
                break
        matches.sort(key=lambda job: job.created_at)
        return matches[0].job_id if matches else None

    async def _follow(
        self,
        job_id: str,
        fingerprint: str,
        *,
        polls: PollClock | None = None,
        deadline: float | None = None,
    ) -> Job:
        """Poll until the job is terminal; failures carry the API's error and hint. A job this
        run paid for is charged what its billing finally says (a refund included). `polls` and
        `deadline`: a training's own (they take minutes, not seconds)."""
        polls = polls or self.polls
        limit = self.options.job_deadline if deadline is None else deadline
        started = self.clock()
        status = "queued"
        progress: float | None = None
        seen: list[tuple[float, float]] = []  # (age, progress) of each poll before the end
        while True:
            age = self.clock() - started
            remaining = limit - age
            if remaining <= 0:
                raise JobTimedOut(job_id, status, age)
            await self.sleep(min(polls.next_delay(age, progress), remaining))
            job = await self._call(lambda: self.client.get_job(job_id))
            status, progress = job.status, job.progress
            terminal = job.status == "success" or job.status in _TERMINAL_FAILURES
            if terminal and job.billing is not None:  # only then final: a refund, a surcharge
                self.spending.billed(fingerprint, job.billing.cu_cost)
            if job.status == "success":
                elapsed, run = self.clock() - started, job.run_seconds
                if run is None:
                    polls.observe(elapsed)
                else:  # a job re-attached after a restart began before `started`: ages are off
                    polls.observe(run, seen if elapsed >= 0.9 * run else ())
                return job
            seen.append((self.clock() - started, job.progress))
            if job.status in _TERMINAL_FAILURES:
                raise JobFailed(
                    job_id, job.status, job.metadata.error or "", job.metadata.hint or ""
                )

    def _commit(self, entry: PlanEntry, made: _Made) -> None:
        """The item is done: its lock entry joins the next flush; stale files of it go."""
        assert entry.item is not None and entry.fingerprint is not None
        old = self.lock.items.get(entry.moved_from or entry.key)
        stages = made.stages
        outputs = list(made.outputs)
        kept = {record.file for record in outputs} | {
            record.file for stage in stages for record in stage.kept
        }
        if old is not None:
            for record in old.files():
                if record.file not in kept:
                    (self.paths.output / record.file).unlink(missing_ok=True)
        if entry.moved_from:
            self.lock.items.pop(entry.moved_from, None)
        if self.options.restore_by_regenerating:
            outputs = [replace(record, asset_id=None) for record in outputs]
            stages = tuple(
                StageRecord(
                    stage.fingerprint, (), tuple(replace(r, asset_id=None) for r in stage.kept)
                )
                for stage in stages
            )
        for record in [*outputs, *(r for stage in stages for r in stage.kept)]:
            path = self.paths.output / record.file
            self.stat_cache.remember(record.file, path.stat(), record.sha256)
        same_assets = old is not None and [r.asset_id for r in old.outputs] == [
            r.asset_id for r in outputs
        ]
        self.lock.items[entry.key] = LockEntry(
            fingerprint=entry.fingerprint,
            request=dict(entry.request or {}),
            seed_derived=entry.item.seed_derived,
            outputs=tuple(outputs),
            stages=stages,
            remote_collection=old.remote_collection if old is not None and same_assets else None,
        )
        if old is not None and old.remote_collection and not same_assets:
            stale = [r.asset_id for r in old.outputs if r.asset_id]
            self._stale.setdefault(old.remote_collection, []).extend(stale)
        self._dirty = True
        self._forget.extend(made.paid)
        if entry.item.caption:
            self._forget.append((f"caption-{entry.fingerprint}", ""))

    async def _sync_collections(self) -> list[ItemResult]:
        """Each remote collection gets the outputs it lacks (49 a request) and loses those of
        regenerated items; created the first time. A failure is reported, never fatal."""
        results = []
        remote = not self.options.restore_by_regenerating
        for sync in self.plan.collections:
            key = f"collection/{sync.name}"
            try:
                added = await self._sync(sync, remote)
            except PipelineError as exc:
                results.append(ItemResult(key, Outcome.FAILED, error=exc))
                self.on_event(Event("failed", key, str(exc)))
                continue
            if added is not None:
                self.on_event(Event("synced", key, f"{added} asset(s) added"))
        return results

    async def _sync(self, sync: CollectionSync, remote: bool) -> int | None:
        members = [
            entry.key
            for entry in self.plan.entries
            if entry.item is not None and entry.item.collection == sync.name
        ]
        remote_id = self.lock.collections.get(sync.name)
        if remote and remote_id:
            known = remote_id
            try:
                await self._call(lambda: self.client.add_to_collection(known, []))
            except ApiRejected as exc:
                if exc.status != 404:
                    raise
                remote_id = None  # deleted on the account: made again, and filled again
        if remote_id is None or (not remote and remote_id):
            if remote:
                made = await self._call(lambda: self.client.create_collection(sync.name))
                remote_id = made.id
            else:
                remote_id = ""  # the local emulator keeps nothing: recorded as in step
            self.lock.collections[sync.name] = remote_id
            self._dirty = True
        todo = [
            key
            for key in members
            if (entry := self.lock.items.get(key)) is not None
            and entry.remote_collection != remote_id
        ]
        if not todo and not self._stale.get(remote_id):
            return None
        ids = [
            record.asset_id
            for key in todo
            for record in self.lock.items[key].outputs
            if record.asset_id
        ]
        if remote:  # PUT and DELETE of ids are idempotent: retried whole, 49 ids a request
            target = remote_id
            await self._call(functools.partial(self.client.add_to_collection, target, ids))
            in_use = set(ids) | {  # an asset another item shares (a reused result) stays
                record.asset_id
                for entry in self.lock.items.values()
                if entry.remote_collection == target
                for record in entry.outputs
            }
            stale = [i for i in self._stale.pop(target, []) if i not in in_use]
            if stale:
                remove = functools.partial(self.client.remove_from_collection, target, stale)
                await self._call(remove)
        for key in todo:
            self.lock.items[key] = replace(self.lock.items[key], remote_collection=remote_id)
        self._dirty = True
        return len(ids)

    # --- helpers ------------------------------------------------------------------------------

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """An idempotent call (reads) under the retry policy."""
        return await self.options.retry.call(fn, sleep=self.sleep, rng=self.rng)

    def _now_iso(self) -> str:
        return datetime.fromtimestamp(self.wall(), UTC).isoformat()
