"""What `plan` and `run` show: the `--json` documents and the lines for people. Pure.

Each function turns a result (Plan, CostReport, RunReport) into a JSON-ready dict or into lines of
text (colour marked with click.style, which `console.say` strips where colour is off); the CLI
decides where they go. The Markdown for CI job summaries is summary.py's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from pipeline.console import plural
from pipeline.plan import Plan, PlanEntry, State
from pipeline.report import Outcome, RunReport

if TYPE_CHECKING:  # cost.py brings the API client: `plan` without --cost must start fast
    from pipeline.cost import CostReport

__all__ = ["cost_lines", "plan_json", "plan_lines", "report_json", "report_lines"]

SHOWN_LINES = 200  # items listed by plan_lines; --json lists all
_COLOURS = {State.NEW: "green", State.CHANGED: "yellow", State.MISSING: "cyan"}


def plan_json(result: Plan, output: str, costs: CostReport | None) -> dict[str, Any]:
    """`pipeline plan --json`: counts, then every entry (with its price under --cost)."""
    doc: dict[str, Any] = {
        "backend": result.backend,
        "counts": {state.value: result.count(state) for state in State},
        "pending": len(result.pending),
        "items": [_entry_json(entry, output) for entry in result.entries],
        "trainings": [
            {
                "name": training.name,
                "state": training.state.value,
                "fingerprint": training.fingerprint,
                "model_id": training.model_id or None,
                "images": [image.path for image in training.training.images],
                "used_by": list(training.users),
            }
            for training in result.trainings
        ],
        "remote_collections": [
            {"collection": sync.name, "id": sync.remote_id or None, "to_add": list(sync.to_add)}
            for sync in result.collections
        ],
    }
    if costs is not None:
        priced = {item.key: item for item in costs.items}
        for entry in doc["items"]:
            item = priced.get(entry["key"])
            if item is not None:
                entry["cost"] = {
                    "units": item.units,
                    "error": item.error,
                    "shared_with": item.shared_with,
                    "in_flight": item.in_flight,
                }
                if len(item.stages) > 1:
                    entry["cost"]["stages"] = dict(item.stages)
        trained = {training.name: training for training in costs.trainings}
        for training in doc["trainings"]:
            price = trained.get(training["name"])
            if price is not None:
                training["cost"] = {"units": price.units, "error": price.error}
        doc["cost"] = {
            "total": costs.total,
            "unpriced": len(costs.unpriced),
            "in_flight": len(costs.in_flight),
        }
    return doc


def _entry_json(entry: PlanEntry, output: str) -> dict[str, Any]:
    collection, _, item_id = entry.key.partition("/")
    files = [f"{output}/{out.file}" for out in entry.locked.outputs] if entry.locked else []
    data: dict[str, Any] = {
        "key": entry.key,
        "collection": collection,
        "id": item_id,
        "state": entry.state.value,
        "reasons": list(entry.reasons),
        "fingerprint": entry.fingerprint,
        "files": files,
    }
    if entry.moved_from:
        data["moved_from"] = entry.moved_from
    if entry.item is not None:
        data["seed"] = entry.item.seed
        if entry.item.steps and entry.state is State.CHANGED:
            data["rerun_from"] = _stage_name(entry, entry.resume)
    return data


def _stage_name(entry: PlanEntry, stage: int) -> str:
    """`generation` for stage 0, else the step's `then[k] (name)`."""
    assert entry.item is not None
    if stage == 0:
        return "generation"
    if stage > len(entry.item.steps):
        return "nothing (the results are locked)"
    return f"then[{stage - 1}] ({entry.item.steps[stage - 1].name})"


def plan_lines(result: Plan, output: str) -> list[str]:
    """The plan for people: counts, one line per item with work (and why), what to do next."""
    total = len(result.entries) - result.count(State.ORPHANED)
    counts = ", ".join(
        f"{result.count(state)} {state.value}"
        for state in (State.NEW, State.CHANGED, State.MISSING, State.UNCHANGED)
    )
    orphans = result.count(State.ORPHANED)
    tail = f"; {orphans} orphaned" if orphans else ""
    lines = [f"plan: {total} item{plural(total)}: {counts}{tail}"]
    for training in result.new_trainings:
        state = training.state
        label = click.style(f"{state.value:<9}", fg=_COLOURS.get(state, "magenta"))
        used = len(training.users)
        what = f"{len(training.training.images)} images, {training.training.type}"
        lines.append(f"  {label} train {training.name} ({what}; used by {used} item{plural(used)})")
    shown = [entry for entry in result.entries if entry.state is not State.UNCHANGED]
    width = max((len(entry.key) for entry in shown[:SHOWN_LINES]), default=0)
    for entry in shown[:SHOWN_LINES]:
        label = click.style(f"{entry.state.value:<9}", fg=_COLOURS.get(entry.state, "magenta"))
        reasons = ", ".join(entry.reasons)
        if entry.state is State.CHANGED and entry.item is not None and entry.item.steps:
            reasons += f"; reruns from {_stage_name(entry, entry.resume)}"
        lines.append(f"  {label} {entry.key:<{width}}  {reasons}".rstrip())
    for sync in result.out_of_step:
        made = "" if sync.remote_id is not None else "create it, "
        count = len(sync.to_add)
        lines.append(
            f"  remote collection {sync.name}: {made}add the outputs of {count} item{plural(count)}"
        )
    if len(shown) > SHOWN_LINES:
        lines.append(
            f"  ... and {len(shown) - SHOWN_LINES} more (`pipeline plan --json` lists all)"
        )
    pending = len(result.pending)
    trainings = len(result.new_trainings)
    if pending or trainings:
        also = f", after {trainings} training{plural(trainings)}" if trainings else ""
        lines.append(
            f"next: `pipeline run` would generate or restore {pending} item{plural(pending)}" + also
        )
    elif result.out_of_step:
        lines.append("next: `pipeline run` would bring the remote collections in step")
    else:
        lines.append(f"nothing to do: every output in {output}/ is up to date")
    if orphans:
        lines.append(f"`pipeline prune` removes the {orphans} orphaned item{plural(orphans)}")
    return lines


def cost_lines(costs: CostReport, *, charged: bool, budget: float | None = None) -> list[str]:
    """Items that could not be priced, then the total and what it leaves out. `charged`: a real
    account's prices (else the local emulator's, which charges nothing)."""
    lines = [
        click.style(f"  cannot price {item.key}: {item.error}", fg="red")
        for item in costs.items
        if item.error is not None
    ]
    lines += [
        click.style(f"  cannot price training {training.name}: {training.error}", fg="red")
        for training in costs.trainings
        if training.error is not None
    ]
    notes = []
    shared = sum(1 for item in costs.items if item.shared_with)
    if shared:
        notes.append(f"{shared} item{plural(shared)} share another's generation")
    resumed = len(costs.in_flight)
    if resumed:
        notes.append(
            f"{resumed} job{plural(resumed)} in flight from an earlier run, not paid again"
        )
    if budget is not None:
        notes.append(f"budget {budget:g}")
    if not charged:
        notes.append("the local emulator's prices: nothing is charged")
    count = len(costs.items)
    tail = f" ({'; '.join(notes)})" if notes else ""
    trainings = len(costs.trainings)
    also = f" and {trainings} training{plural(trainings)}" if trainings else ""
    lines.append(
        f"estimated cost: {costs.total:g} creative units for {count} item{plural(count)}"
        f"{also}{tail}"
    )
    return lines


def report_json(report: RunReport) -> dict[str, Any]:
    """`pipeline run --json`: counts, units spent, and every item's outcome."""
    return {
        "counts": {
            **{outcome.value: report.count(outcome) for outcome in Outcome},
            "unchanged": report.unchanged,
            "orphaned": report.orphaned,
        },
        "seconds": round(report.seconds, 3),
        "interrupted": report.interrupted,
        "spent": report.spent,
        "items": [
            {
                "key": r.key,
                "state": r.outcome.value,
                "files": r.files,
                "attempts": r.attempts,
                "error": str(r.error) if r.error else None,
            }
            for r in report.results
        ],
        "trainings": [
            {
                "name": r.key.removeprefix("train/"),
                "state": "trained" if r.outcome is Outcome.GENERATED else r.outcome.value,
                "error": str(r.error) if r.error else None,
            }
            for r in report.trainings
        ],
    }


def report_lines(report: RunReport, *, charged: bool) -> list[str]:
    """The run's one-line summary (and the orphans' next step). `charged`: a real account."""
    parts = [
        f"{report.count(Outcome.GENERATED)} generated",
        f"{report.count(Outcome.RESTORED)} restored",
        f"{report.unchanged} unchanged",
        f"{report.count(Outcome.FAILED)} failed",
    ]
    skipped = report.count(Outcome.SKIPPED)
    if skipped:
        parts.append(f"{skipped} not started")
    trained = sum(1 for r in report.trainings if r.outcome is Outcome.GENERATED)
    if report.trainings:
        failed = len(report.trainings) - trained
        parts.append(f"{trained} trained" + (f" ({failed} training(s) failed)" if failed else ""))
    if report.spent:
        what = "spent" if charged else "as priced by the local emulator; nothing charged"
        parts.append(f"{report.spent:g} creative units {what}")
    lines = [f"done in {report.seconds:.1f}s: " + ", ".join(parts)]
    if report.orphaned:
        lines.append(
            f"{report.orphaned} orphaned item(s) in the lock: `pipeline prune` removes them"
        )
    return lines
