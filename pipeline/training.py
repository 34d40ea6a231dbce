"""Style training: the `train:` models a run needs, trained once per training fingerprint.

For a training the lock lacks: `POST /models` (a new model of the type), its images uploaded once
each (uploads.py) and added in batches of 10, the count checked, then `PUT /models/{id}/train`,
paid once and followed to `trained`. The lock then maps the training fingerprint to the model id,
and items use that id as their LoRA. Money safety as for generations: the journal holds the
model id from its creation on; a rerun after a crash looks at the model (`GET /models/{id}`)
and goes on from what it says: `trained` is done, `training` is followed, `new` is trained (its
train call never took effect: the API says so). A model whose image count is off is left
unpaid and a fresh one made. A failed training fails the items that use it, with the API's
reason; the items that do not use it go on meanwhile.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from pipeline.client import TRAINING_BATCH, ApiClient
from pipeline.errors import (
    ApiError,
    ApiRejected,
    InvalidInput,
    JobFailed,
    Problem,
    TrainingFailed,
)
from pipeline.journal import Intent, Journal
from pipeline.limits import RetryPolicy, Sleep, Spending
from pipeline.lockfile import Lockfile
from pipeline.plan import State, TrainingEntry
from pipeline.report import Event
from pipeline.uploads import Uploads
from pipeline.wire import Job, Model

T = TypeVar("T")
_PREFIX = "train-"
_STARTED = frozenset({"training", "trained"})
_ENDED_BADLY = frozenset({"failed", "training-canceled"})


def _unique(entry: TrainingEntry) -> int:
    """How many distinct images the training has (two paths may hold the same content)."""
    return len({image.sha256 for image in entry.training.images})


def training_key(fingerprint: str) -> str:
    """The journal's (and the budget's) key for a training."""
    return _PREFIX + fingerprint


class Trainings:
    """Trained model ids by training name, for one run (`model_id`); `start` trains the new."""

    def __init__(
        self,
        client: ApiClient,
        entries: Mapping[str, TrainingEntry],
        lock: Lockfile,
        journal: Journal,
        intents: dict[str, Intent],
        uploads: Uploads,
        spending: Spending,
        *,
        retry: RetryPolicy,
        sleep: Sleep,
        rng: random.Random,
        now: Callable[[], str],
        saved: Callable[[str, str], None],
        follow: Callable[[str, str], Awaitable[Job]],
        on_event: Callable[[Event], None],
        cache: bool = True,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.client, self.entries, self.lock, self.journal = client, entries, lock, journal
        self._intents, self.uploads, self.spending = intents, uploads, spending
        self.retry, self.sleep, self.rng, self.now = retry, sleep, rng, now
        self._saved, self._follow, self.on_event = saved, follow, on_event
        self.cache = cache  # False on the local backend: its models end with the run
        self.stopping = stopping  # after a first Ctrl-C nothing new is paid for
        self._models: dict[str, asyncio.Future[str]] = {}
        self.trained = 0  # trainings this run paid for

    def start(self, names: list[str]) -> None:
        """Begin these trainings now (the plan's new ones: items that need them wait)."""
        for name in names:
            self._future(name)

    async def model_id(self, name: str) -> str:
        """The trained model of training `name`; TrainingFailed with the API's reason."""
        return await asyncio.shield(self._future(name))

    async def wait(self) -> dict[str, BaseException | None]:
        """Every training started: None for a success, else its error."""
        outcomes: dict[str, BaseException | None] = {}
        for name, future in self._models.items():
            try:
                await asyncio.shield(future)
                outcomes[name] = None
            except Exception as exc:
                outcomes[name] = exc
        return outcomes

    def _future(self, name: str) -> asyncio.Future[str]:
        future = self._models.get(name)
        if future is None:
            future = self._models[name] = asyncio.ensure_future(self._ensure(self.entries[name]))
            future.add_done_callback(lambda done: done.cancelled() or done.exception())
        return future

    async def _ensure(self, entry: TrainingEntry) -> str:
        recorded = self.lock.trainings.get(entry.fingerprint) if self.cache else None
        if recorded:
            model = await self._model(recorded)
            if model is not None and model.status == "trained":
                return recorded
            why = "is gone" if model is None else f"is {model.status}"
            self.on_event(Event("retry", f"train/{entry.name}", f"model {recorded} {why}"))
        key = training_key(entry.fingerprint)
        intent = self._intents.pop(key, None)
        model = None
        if intent is not None and intent.job_id:
            model = await self._usable(await self._model(intent.job_id), entry)
        if model is None:
            model = await self._create(entry, key)
        job_id = model.job_id
        if model.status == "new":
            job_id = await self._train(entry, key, model)
        if model.status != "trained":
            if job_id is None:
                raise TrainingFailed(entry.name, f"model {model.id} is {model.status}, no job")
            try:
                await self._follow(job_id, key)
            except JobFailed as exc:
                self.journal.forget(key)  # a failed training is over: a rerun starts afresh
                raise TrainingFailed(
                    entry.name, exc.error or f"the job ended {exc.status}"
                ) from None
        self.lock.trainings[entry.fingerprint] = model.id if self.cache else ""
        self._saved(key, model.id)
        kind = "trained" if entry.state is State.NEW else "retrained"  # the plan counted the new
        self.on_event(Event(kind, f"train/{entry.name}", model.id))
        return model.id

    async def _usable(self, model: Model | None, entry: TrainingEntry) -> Model | None:
        """The model an earlier run made, if this run can go on with it."""
        if model is None or model.status in _ENDED_BADLY:
            return None
        if model.status == "new" and model.training_images_number != _unique(entry):
            return None  # images half added: left as it is (unpaid), a fresh model is made
        return model

    async def _create(self, entry: TrainingEntry, key: str) -> Model:
        training = entry.training
        name = f"{training.name} ({entry.fingerprint[:8]})"
        intent = Intent(key, f"train/{training.name}", training.type, {"name": name}, self.now())
        await asyncio.to_thread(self.journal.write, intent)
        try:  # free: a lost answer may leave an empty model behind, never a paid one
            model = await self._call(
                lambda: self.client.create_model(name=name, type=training.type)
            )
        except ApiRejected as exc:
            if exc.status >= 500:
                raise
            self.journal.forget(key)
            problem = Problem(training.locate("type"), f"the API refused the model: {exc}")
            raise InvalidInput([problem]) from None
        self.journal.attach(intent, model.id)
        ids = await asyncio.gather(*(self.uploads.asset_id(file) for file in training.images))
        unique = list(dict.fromkeys(ids))
        added = 0
        for start in range(0, len(unique), TRAINING_BATCH):
            batch = unique[start : start + TRAINING_BATCH]
            target = added + len(batch)

            async def send(batch: list[str] = batch, target: int = target) -> int:
                await self.client.add_training_images(model.id, batch, preset=training.preset)
                return target

            async def find(target: int = target) -> int | None:
                current = await self._model(model.id)
                count = current.training_images_number if current else 0
                return target if count >= target else None

            added = await self.retry.send_once(send, find, sleep=self.sleep, rng=self.rng)
        model = await self._model(model.id) or model
        if model.training_images_number != len(unique):
            self.journal.forget(key)
            reason = (
                f"model {model.id} holds {model.training_images_number} training images, "
                f"{len(unique)} were sent; a rerun starts over with a new model"
            )
            raise TrainingFailed(training.name, reason)
        return model

    async def _train(self, entry: TrainingEntry, key: str, model: Model) -> str:
        """Start the training, paid once; the training job's id."""
        params = dict(entry.training.params) or None
        if self.stopping():
            raise TrainingFailed(entry.name, "not started: the run is stopping")
        if self.spending.budget is not None and key not in self.spending.estimates:
            dry = await self._call(
                lambda: self.client.train(model.id, parameters=params, dry_run=True)
            )
            self.spending.price(key, dry.cost.creative_units_cost)
        reserved = self.spending.reserve(key)
        billed: list[float | None] = []

        async def send() -> str:
            reply = await self.client.train(model.id, parameters=params)
            billed.append(reply.cost.creative_units_cost)
            if reply.job is not None:
                return reply.job.job_id
            started = await find()  # an answer without its job: the model says
            if started is None:
                raise TrainingFailed(entry.name, "the API answered the train call without a job")
            return started

        async def find() -> str | None:
            current = await self._model(model.id)
            if current is not None and current.status in _STARTED and current.job_id:
                return current.job_id
            return None

        try:
            job_id = await self.retry.send_once(send, find, sleep=self.sleep, rng=self.rng)
        except ApiError as exc:
            if getattr(exc, "maybe_sent", False):
                self.spending.unknown(key)
            raise
        except asyncio.CancelledError:
            self.spending.unknown(key)
            raise
        finally:
            self.spending.release(reserved)
        self.spending.paid(key, billed[-1] if billed else None)
        self.trained += 1
        self.on_event(Event("submitted", f"train/{entry.name}", job_id))
        return job_id

    async def _model(self, model_id: str) -> Model | None:
        try:
            return await self._call(lambda: self.client.get_model(model_id))
        except ApiRejected as exc:
            if exc.status == 404:
                return None
            raise

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await self.retry.call(fn, sleep=self.sleep, rng=self.rng)
