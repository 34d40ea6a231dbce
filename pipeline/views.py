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
    return data


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
    shown = [entry for entry in result.entries if entry.state is not State.UNCHANGED]
    width = max((len(entry.key) for entry in shown[:SHOWN_LINES]), default=0)
    for entry in shown[:SHOWN_LINES]:
        label = click.style(f"{entry.state.value:<9}", fg=_COLOURS.get(entry.state, "magenta"))
        reasons = ", ".join(entry.reasons)
        lines.append(f"  {label} {entry.key:<{width}}  {reasons}".rstrip())
    if len(shown) > SHOWN_LINES:
        lines.append(
            f"  ... and {len(shown) - SHOWN_LINES} more (`pipeline plan --json` lists all)"
        )
    pending = len(result.pending)
    if pending:
        lines.append(
            f"next: `pipeline run` would generate or restore {pending} item{plural(pending)}"
        )
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
    lines.append(
        f"estimated cost: {costs.total:g} creative units for {count} item{plural(count)}{tail}"
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
    if report.spent:
        what = "spent" if charged else "as priced by the local emulator; nothing charged"
        parts.append(f"{report.spent:g} creative units {what}")
    lines = [f"done in {report.seconds:.1f}s: " + ", ".join(parts)]
    if report.orphaned:
        lines.append(
            f"{report.orphaned} orphaned item(s) in the lock: `pipeline prune` removes them"
        )
    return lines
