"""Cost preview: what the pending part of a plan would cost, priced by the API's own dry runs.

Every item `run` would pay for (new and changed ones, unchanged ones too with --force, missing ones
on the local backend, whose restore is a regeneration) is checked against its model's input schema
and sent with `?dryRun=true`: the API answers 269 with `creativeUnitsCost` and creates nothing,
charges nothing. Items with the same fingerprint share one generation, so they are counted once;
an item whose job an interrupted run left in flight is followed, not paid again, so it is priced
(a resend may still be needed) but not counted in the total.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pipeline.client import ApiClient
from pipeline.errors import PipelineError
from pipeline.limits import RetryPolicy, Sleep
from pipeline.plan import PlanEntry, State
from pipeline.request import ModelSchemas, build_body

__all__ = ["CostReport", "ItemCost", "estimate", "paid_entries"]

T = TypeVar("T")


@dataclass(frozen=True)
class ItemCost:
    key: str
    fingerprint: str
    units: float | None  # None: not priced (see `error`), or shared with an item priced before
    error: str | None = None
    shared_with: str | None = None  # the item whose generation this one shares
    in_flight: bool = False  # its job, paid by an earlier run, is still followed: not counted

    @property
    def counted(self) -> float:
        """What this item adds to the total."""
        return 0.0 if self.in_flight else self.units or 0.0


@dataclass(frozen=True)
class CostReport:
    items: list[ItemCost]

    @property
    def total(self) -> float:
        return sum(item.counted for item in self.items)

    @property
    def in_flight(self) -> list[ItemCost]:
        return [item for item in self.items if item.in_flight]

    @property
    def unpriced(self) -> list[ItemCost]:
        return [item for item in self.items if item.error is not None]

    def by_fingerprint(self) -> dict[str, float]:
        return {item.fingerprint: item.units for item in self.items if item.units is not None}


def paid_entries(
    entries: Sequence[PlanEntry], *, restore_is_free: bool, force: bool = False
) -> list[PlanEntry]:
    """The entries a run would pay for (`force`: the unchanged ones are generated again too)."""
    paid = {State.NEW, State.CHANGED}
    if not restore_is_free:
        paid.add(State.MISSING)
    if force:
        paid.add(State.UNCHANGED)
    return [entry for entry in entries if entry.state in paid and entry.item is not None]


async def estimate(
    client: ApiClient,
    entries: Sequence[PlanEntry],
    *,
    in_flight: Collection[str] = frozenset(),
    concurrency: int = 8,
    retry: RetryPolicy | None = None,
    sleep: Sleep = asyncio.sleep,
) -> CostReport:
    """Price `entries` (all assumed paid) by dry runs, `concurrency` at a time.

    `in_flight`: fingerprints whose job an earlier run submitted (the journal has its id).
    """
    policy = retry or RetryPolicy()
    gate = asyncio.Semaphore(concurrency)

    async def call(fn: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await policy.call(fn, sleep=sleep)

    schemas = ModelSchemas(lambda model: call(lambda: client.get_model(model)))

    async def price(entry: PlanEntry, fingerprint: str) -> ItemCost:
        item = entry.item
        assert item is not None
        try:
            body, problems = build_body(item, await schemas.of(item))
            if problems:
                return ItemCost(entry.key, fingerprint, None, "; ".join(map(str, problems)))
            reply = await call(lambda: client.generate(item.model, body, dry_run=True))
        except PipelineError as exc:
            return ItemCost(entry.key, fingerprint, None, str(exc))
        units = reply.cost.creative_units_cost
        if units is None:  # free is a price; no price is not: under a budget it is not sent
            return ItemCost(entry.key, fingerprint, None, "the dry run gave no price")
        return ItemCost(entry.key, fingerprint, units, in_flight=fingerprint in in_flight)

    keyed = [(entry, entry.fingerprint) for entry in entries if entry.fingerprint is not None]
    first: dict[str, PlanEntry] = {}
    for entry, fingerprint in keyed:
        first.setdefault(fingerprint, entry)
    priced: Mapping[str, ItemCost] = {
        cost.fingerprint: cost
        for cost in await asyncio.gather(*(price(entry, fp) for fp, entry in first.items()))
    }
    items = []
    for entry, fingerprint in keyed:
        own = priced[fingerprint]
        if first[fingerprint] is entry:
            items.append(own)
        else:
            items.append(ItemCost(entry.key, fingerprint, None, own.error, shared_with=own.key))
    return CostReport(items)
