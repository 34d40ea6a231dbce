"""Markdown summaries for CI: what `plan` and `run` append to `$GITHUB_STEP_SUMMARY`.

A table of items by state, the items that need work (or failed) with their reasons, the creative
units estimated or spent, and the time taken. Plain text in, plain text out; the CLI decides
whether and where to write it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pipeline.plan import Plan, State
from pipeline.report import Outcome, RunReport

if TYPE_CHECKING:
    from pipeline.cost import CostReport

__all__ = ["error_markdown", "plan_markdown", "run_markdown"]

_SHOWN = 100  # rows per list; the rest is counted


def plan_markdown(result: Plan, costs: CostReport | None) -> str:
    states = (State.NEW, State.CHANGED, State.MISSING, State.UNCHANGED, State.ORPHANED)
    lines = ["### pipeline plan", "", _counts((s.value, result.count(s)) for s in states)]
    units = {item.key: item for item in costs.items} if costs else {}
    pending = result.pending
    if pending:
        lines += ["", "| item | state | why | creative units |", "|---|---|---|---:|"]
        for entry in pending[:_SHOWN]:
            cost = units.get(entry.key)
            shown = "" if cost is None else _units(cost.units, cost.error, cost.shared_with)
            why = ", ".join(entry.reasons)
            lines.append(f"| `{entry.key}` | {entry.state.value} | {_cell(why)} | {shown} |")
        lines += _more(len(pending), columns=4)
    if costs is not None:
        notes = [f"{len(costs.unpriced)} could not be priced"] if costs.unpriced else []
        if costs.in_flight:
            notes.append(f"{len(costs.in_flight)} in flight from an earlier run, not paid again")
        tail = f" ({'; '.join(notes)})" if notes else ""
        lines += ["", f"Estimated cost: **{costs.total:g} creative units**{tail}."]
    elif pending:
        lines += ["", "No cost preview: `pipeline plan --cost` prices it (with the API secrets)."]
    return "\n".join(lines) + "\n"


def run_markdown(report: RunReport, budget: float | None) -> str:
    counts = [(outcome.value, report.count(outcome)) for outcome in Outcome]
    counts += [("unchanged", report.unchanged), ("orphaned", report.orphaned)]
    lines = ["### pipeline run", "", _counts(counts)]
    failed = report.failures
    if failed:
        lines += ["", "| item not done | reason |", "|---|---|"]
        lines += [f"| `{f.key}` | {_cell(str(f.error))} |" for f in failed[:_SHOWN]]
        lines += _more(len(failed), columns=2)
    limit = f" of a budget of {budget:g}" if budget is not None else ""
    lines += [
        "",
        f"Spent: **{report.spent:g} creative units**{limit}. Time: {report.seconds:.1f} s."
        + (" Interrupted." if report.interrupted else ""),
    ]
    return "\n".join(lines) + "\n"


def error_markdown(command: str, error: Exception) -> str:
    """A command that stopped with an error (invalid manifests, over budget, ...)."""
    return f"### pipeline {command}: error\n\n```\n{error}\n```\n"


def _counts(pairs: Iterable[tuple[str, int]]) -> str:
    shown = [(name, count) for name, count in pairs if count]
    if not shown:
        return "Nothing to do."
    head = "| " + " | ".join(name for name, _ in shown) + " |"
    rule = "|" + "---:|" * len(shown)
    return "\n".join([head, rule, "| " + " | ".join(str(count) for _, count in shown) + " |"])


def _units(units: float | None, error: str | None, shared_with: str | None) -> str:
    if error is not None:
        return f"not priced: {_cell(error)}"
    if shared_with is not None:
        return f"shared with `{shared_with}`"
    return f"{units:g}" if units is not None else ""


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, no pipes, not too long."""
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= 300 else flat[:299] + "…"


def _more(count: int, *, columns: int) -> list[str]:
    """The row that counts what a table leaves out."""
    return [f"| ... and {count - _SHOWN} more |" + " |" * (columns - 1)] if count > _SHOWN else []
