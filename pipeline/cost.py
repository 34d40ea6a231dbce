"""Cost preview: what the pending part of a plan would cost, priced by the API's own dry runs.

Every item `run` would pay for (new and changed ones, unchanged ones too with --force, missing ones
on the local backend, whose restore is a regeneration) is priced stage by stage, each with
`?dryRun=true` (the API answers 269 with `creativeUnitsCost`, creates nothing, charges nothing):
  generation   its exact body; local input files go as data URLs (a dry run keeps nothing), a
               trained LoRA as the locked model (one not trained yet is left out: a LoRA does not
               change the price)
  then steps   each step the chain reruns, once per output, its input a placeholder image of the
               item's size (the real input exists only during the run); one dry run per distinct
               step and size
  caption      one per final output (`caption: true`)
  trainings    each new one: `PUT /models/{id}/train?dryRun=true&trainingImagesCount=N` on a
               probe, an empty model of the training's type that is never trained (it is made
               once and its id kept under .pipeline/: a dry run needs a model to price)
The prices are keyed as the run's paid requests are (`stages[0]`, `<stage>.<output>`,
`caption-<fingerprint>`, `train-<fingerprint>`): under a budget they are what it reserves.
Items with the same fingerprint share one generation, so they are counted once; a request an
interrupted run left in flight is followed, not paid again, so it is priced but not counted.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from pipeline.client import ApiClient
from pipeline.errors import ApiRejected, PipelineError
from pipeline.limits import RetryPolicy, Sleep
from pipeline.manifest import Item
from pipeline.plan import PlanEntry, State, TrainingEntry
from pipeline.request import ModelSchemas, build_body, build_step_body
from pipeline.training import training_key

__all__ = ["CostReport", "ItemCost", "TrainingCost", "estimate", "paid_entries"]

T = TypeVar("T")
_PROBES = "probes.json"


@dataclass(frozen=True)
class ItemCost:
    key: str
    fingerprint: str
    units: float | None  # None: not priced (see `error`), or shared with an item priced before
    error: str | None = None
    shared_with: str | None = None  # the item whose generation this one shares
    in_flight: bool = False  # its every paid request is followed from an earlier run
    parts: Mapping[str, float] = field(default_factory=dict)  # run's request key -> units
    stages: Mapping[str, float] = field(default_factory=dict)  # `generation`, `then[0] (x)`...
    counted_units: float | None = None  # what it adds (less the parts in flight); None: units

    @property
    def counted(self) -> float:
        """What this item adds to the total."""
        if self.in_flight:
            return 0.0
        return self.counted_units if self.counted_units is not None else self.units or 0.0


@dataclass(frozen=True)
class TrainingCost:
    name: str
    fingerprint: str
    units: float | None
    error: str | None = None


@dataclass(frozen=True)
class CostReport:
    items: list[ItemCost]
    trainings: list[TrainingCost] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(item.counted for item in self.items) + sum(
            training.units or 0.0 for training in self.trainings
        )

    @property
    def in_flight(self) -> list[ItemCost]:
        return [item for item in self.items if item.in_flight]

    @property
    def unpriced(self) -> list[ItemCost | TrainingCost]:
        found: list[ItemCost | TrainingCost] = [i for i in self.items if i.error is not None]
        return found + [t for t in self.trainings if t.error is not None]

    def by_fingerprint(self) -> dict[str, float]:
        """The price of each paid request the run would send, by the run's key for it."""
        prices: dict[str, float] = {}
        for item in self.items:
            prices.update(item.parts)
        for training in self.trainings:
            if training.units is not None:
                prices[training_key(training.fingerprint)] = training.units
        return prices


def paid_entries(
    entries: Sequence[PlanEntry], *, restore_is_free: bool, force: bool = False
) -> list[PlanEntry]:
    """The entries a run would pay for (`force`: the unchanged ones are generated again too)."""
    paid = {State.NEW, State.CHANGED}
    if not restore_is_free:
        paid.add(State.MISSING)
    if force:
        paid.add(State.UNCHANGED)
    return [
        entry
        for entry in entries
        if entry.item is not None
        and (
            entry.state in paid
            # a restore is free, but captions asked for since are paid for
            or (entry.state is State.MISSING and entry.item.caption and _uncaptioned(entry))
        )
    ]


class _Pricer:
    """The dry runs of one preview, `concurrency` at a time, each retried by the policy."""

    def __init__(
        self,
        client: ApiClient,
        root: Path,
        *,
        concurrency: int,
        retry: RetryPolicy,
        sleep: Sleep,
        probes: Path | None,
        trained: Mapping[str, str],
    ) -> None:
        self.client, self.root = client, root
        self.trained = trained  # training name -> its locked model
        self.gate = asyncio.Semaphore(concurrency)
        self.retry, self.sleep = retry, sleep
        self.schemas = ModelSchemas(lambda model: self.call(lambda: client.get_model(model)))
        self._memo: dict[str, asyncio.Future[float]] = {}
        self._probes_file = probes
        self._probes: dict[str, asyncio.Future[str]] = {}

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        async with self.gate:
            return await self.retry.call(fn, sleep=self.sleep)

    async def once(self, key: str, price: Callable[[], Awaitable[float]]) -> float:
        """`price()` for the first asker of `key`; the others share its answer."""
        future = self._memo.get(key)
        if future is None:
            future = self._memo[key] = asyncio.ensure_future(price())
        return await asyncio.shield(future)

    async def generation(
        self, entry: PlanEntry, force: bool
    ) -> tuple[dict[str, float], dict[str, float]]:
        """The item's paid requests priced, by the run's key; and by stage, for people."""
        item = entry.item
        assert item is not None and entry.fingerprint is not None
        stages = entry.stages or (entry.fingerprint,)
        start = 0 if force else min(entry.resume, len(stages))
        parts: dict[str, float] = {}
        shown: dict[str, float] = {}
        if start == 0:
            parts[stages[0]] = shown["generation"] = await self._generation(item)
        for k in range(max(start, 1), len(stages)):
            units = await self._step(item, k - 1)
            parts.update({f"{stages[k]}.{n}": units for n in range(item.outputs)})
            shown[f"then[{k - 1}] ({item.steps[k - 1].name})"] = units * item.outputs
        reused = len(entry.reused_captions) == item.outputs and all(entry.reused_captions)
        if item.caption and (start < len(stages) or _uncaptioned(entry)) and not reused:
            key = f"caption-{entry.fingerprint}"
            parts[key] = shown["caption"] = await self._caption(item.outputs)
        return parts, shown

    async def _generation(self, item: Item) -> float:
        model = await self.schemas.of(item)
        files = [file for file in (item.image, *item.reference_images) if file is not None]
        assets = {}
        for file in files:
            data = await asyncio.to_thread((self.root / file.path).read_bytes)
            assets[file.sha256] = _data_url(data, file.mime_type)
        trained = {
            lora.training: self.trained[lora.training]
            for lora in item.loras
            if lora.training is not None and lora.training in self.trained
        }
        untrained = [lora for lora in item.loras if lora.training and lora.training not in trained]
        if untrained:  # priced without the LoRAs still to train
            item = _without(item, untrained)
        body, problems = build_body(item, model, assets=assets, trained=trained)
        if problems:
            raise _Unpriced("; ".join(map(str, problems)))
        reply = await self.call(lambda: self.client.generate(item.model, body, dry_run=True))
        return _units(reply.cost.creative_units_cost)

    async def _step(self, item: Item, index: int) -> float:
        step = item.steps[index]
        size = (item.width or 1024, item.height or 1024)
        key = json.dumps([step.model, dict(step.params), size], sort_keys=True)

        async def price() -> float:
            model = await self.schemas.of_model(step.model, item.locate(f"steps[{index}].model"))
            body, problems = build_step_body(item, index, step, model, _placeholder(*size))
            if problems:
                raise _Unpriced("; ".join(map(str, problems)))
            reply = await self.call(lambda: self.client.generate(step.model, body, dry_run=True))
            return _units(reply.cost.creative_units_cost)

        return await self.once(f"step:{key}", price)

    async def _caption(self, count: int) -> float:
        async def price() -> float:
            images = [_placeholder(64, 64)] * count
            reply = await self.call(lambda: self.client.caption(images, dry_run=True))
            return _units(reply.cost.creative_units_cost)

        return await self.once(f"caption:{count}", price)

    async def training(self, entry: TrainingEntry) -> float:
        training = entry.training
        probe = await self._probe(training.type)
        count = len({image.sha256 for image in training.images})
        params = dict(training.params) or None

        async def dry() -> float:
            reply = await self.client.train(
                probe, parameters=params, dry_run=True, images_count=count
            )
            return _units(reply.cost.creative_units_cost)

        return await self.call(dry)

    async def _probe(self, model_type: str) -> str:
        future = self._probes.get(model_type)
        if future is None:
            future = self._probes[model_type] = asyncio.ensure_future(self._make_probe(model_type))
        return await asyncio.shield(future)

    async def _make_probe(self, model_type: str) -> str:
        """An empty model to price trainings on: the one kept under .pipeline/ if still usable."""
        known = self._read_probes().get(model_type)
        if known is not None:
            try:
                model = await self.call(lambda: self.client.get_model(known))
                if model.status == "new":
                    return known
            except ApiRejected as exc:
                if exc.status != 404:
                    raise
        name = f"pipeline price probe ({model_type}; never trained)"
        made = await self.call(lambda: self.client.create_model(name=name, type=model_type))
        probes = self._read_probes()
        probes[model_type] = made.id
        if self._probes_file is not None:
            self._probes_file.parent.mkdir(parents=True, exist_ok=True)
            self._probes_file.write_text(json.dumps(probes, indent=1, sort_keys=True))
        return made.id

    def _read_probes(self) -> dict[str, str]:
        if self._probes_file is None:
            return {}
        try:
            data = json.loads(self._probes_file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


class _Unpriced(Exception):
    """A part cannot be priced; the message says why."""


async def estimate(
    client: ApiClient,
    entries: Sequence[PlanEntry],
    *,
    trainings: Sequence[TrainingEntry] = (),
    root: Path = Path("."),
    in_flight: Collection[str] = frozenset(),
    concurrency: int = 8,
    retry: RetryPolicy | None = None,
    sleep: Sleep = asyncio.sleep,
    force: bool = False,
    probes: Path | None = None,
) -> CostReport:
    """Price `entries` (all assumed paid) and `trainings` (the new ones) by dry runs.

    `in_flight`: the run's keys of requests an earlier run submitted (the journal has their job).
    `probes`: where the training price probes' ids are kept (None: made for this preview only).
    """
    pricer = _Pricer(
        client,
        root,
        concurrency=concurrency,
        retry=retry or RetryPolicy(),
        sleep=sleep,
        probes=probes,
        trained={
            t.name: t.model_id for t in trainings if t.model_id and t.state is State.UNCHANGED
        },
    )

    async def price(entry: PlanEntry, fingerprint: str) -> ItemCost:
        try:
            parts, shown = await pricer.generation(entry, force)
        except _Unpriced as exc:
            return ItemCost(entry.key, fingerprint, None, str(exc))
        except PipelineError as exc:
            return ItemCost(entry.key, fingerprint, None, str(exc))
        units = sum(parts.values())
        counted = sum(units for key, units in parts.items() if key not in in_flight)
        flying = bool(parts) and all(key in in_flight for key in parts)
        return ItemCost(
            entry.key,
            fingerprint,
            units,
            in_flight=flying,
            parts=parts,
            stages=shown,
            counted_units=counted,
        )

    async def train(entry: TrainingEntry) -> TrainingCost:
        try:
            units = await pricer.training(entry)
        except (_Unpriced, PipelineError) as exc:
            return TrainingCost(entry.name, entry.fingerprint, None, str(exc))
        return TrainingCost(entry.name, entry.fingerprint, units)

    keyed = [(entry, entry.fingerprint) for entry in entries if entry.fingerprint is not None]
    first: dict[str, PlanEntry] = {}
    for entry, fingerprint in keyed:
        first.setdefault(fingerprint, entry)
    priced_items, priced_trainings = await asyncio.gather(
        asyncio.gather(*(price(entry, fp) for fp, entry in first.items())),
        asyncio.gather(*(train(t) for t in trainings if t.state is State.NEW)),
    )
    priced: Mapping[str, ItemCost] = {cost.fingerprint: cost for cost in priced_items}
    items = []
    for entry, fingerprint in keyed:
        own = priced[fingerprint]
        if first[fingerprint] is entry:
            items.append(own)
        else:
            items.append(ItemCost(entry.key, fingerprint, None, own.error, shared_with=own.key))
    return CostReport(items, list(priced_trainings))


def _units(value: float | None) -> float:
    if value is None:  # free is a price; no price is not: under a budget it is not sent
        raise _Unpriced("the dry run gave no price")
    return value


def _uncaptioned(entry: PlanEntry) -> bool:
    return entry.locked is None or any(r.caption is None for r in entry.locked.outputs)


def _without(item: Item, loras: Sequence[Any]) -> Item:
    return replace(item, loras=tuple(lora for lora in item.loras if lora not in loras))


def _data_url(data: bytes, mime_type: str) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode()}"


_PLACEHOLDERS: dict[tuple[int, int], str] = {}


def _placeholder(width: int, height: int) -> str:
    """A plain PNG of this size as a data URL: the stand-in input of a step's dry run."""
    found = _PLACEHOLDERS.get((width, height))
    if found is None:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (width, height), (128, 128, 128)).save(buffer, "PNG")
        found = _PLACEHOLDERS[(width, height)] = _data_url(buffer.getvalue(), "image/png")
    return found
