"""The command line: the only module that prints or exits. It parses, calls, renders.

Contract (design.md): `--json` prints one JSON document on stdout and nothing else there; human
output goes to stderr. Exit codes: 0 ok, 1 something pending (`plan --check`) or some items
failed, 2 invalid input, 130 interrupted. Every `PipelineError` ends here with its own message.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from pipeline import __version__
from pipeline.backend import BackendChoice, resolve_backend
from pipeline.errors import PipelineError
from pipeline.lockfile import read_lock
from pipeline.manifest import Collection, Settings, load_manifests, load_settings
from pipeline.plan import Plan, PlanEntry, State, make_plan
from pipeline.state import STATE_DIR, StatCache

_BACKENDS = click.Choice(["auto", "scenario", "local"])
_SHOWN_LINES = 200


class _Group(click.Group):
    """Ends every PipelineError with its message and exit code, and Ctrl-C with 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            _say(f"error: {exc}", fg="red")
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            _say("interrupted")
            ctx.exit(130)


@dataclass(frozen=True)
class _Project:
    root: Path


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-C",
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The game repo: where pipeline.yaml, manifests/ and assets.lock live.",
)
@click.version_option(__version__, prog_name="pipeline")
@click.pass_context
def cli(ctx: click.Context, project_dir: Path) -> None:
    """Turn YAML asset manifests into generated game art through the Scenario API."""
    ctx.obj = _Project(project_dir.resolve())


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.pass_obj
def validate(project: _Project, paths: tuple[Path, ...]) -> None:
    """Check pipeline.yaml and the manifests (all of them, or PATHS). Exit 2 when invalid."""
    settings = load_settings(project.root)
    collections = load_manifests(project.root, settings, paths)
    items = sum(len(c.items) for c in collections)
    _say(
        f"ok: {len(collections)} manifest{_s(len(collections))}, "
        f"{items} item{_s(items)} after expansion"
    )


@cli.command()
@click.argument("select", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON on stdout.")
@click.option("--check", is_flag=True, help="Exit 1 when anything is pending (for CI).")
@click.option("--backend", type=_BACKENDS, default=None, help="Override pipeline.yaml's backend.")
@click.pass_obj
def plan(
    project: _Project, select: tuple[str, ...], as_json: bool, check: bool, backend: str | None
) -> None:
    """Show what `run` would do, and why, without calling the API.

    SELECT is `collection` or `collection/item`; globs allowed.
    """
    settings = load_settings(project.root).with_overrides(backend=backend)
    collections = load_manifests(project.root, settings)
    choice = resolve_backend(settings.backend, os.environ)
    _say(f"backend: {choice.kind} ({choice.reason})")
    result = _make_plan(project.root, settings, collections, choice, select)
    if as_json:
        click.echo(json.dumps(_plan_json(result, settings), indent=2, ensure_ascii=False))
    else:
        _render_plan(result, settings)
    if check and result.pending:
        sys.exit(1)


def _make_plan(
    root: Path,
    settings: Settings,
    collections: Sequence[Collection],
    choice: BackendChoice,
    select: Sequence[str],
) -> Plan:
    return make_plan(
        [item for collection in collections for item in collection.items],
        read_lock(root / settings.lockfile),
        backend=choice.kind,
        output_dir=root / settings.output,
        stat_cache=StatCache.load(root / STATE_DIR),
        collections=[collection.name for collection in collections],
        select=select,
    )


def _plan_json(result: Plan, settings: Settings) -> dict[str, Any]:
    return {
        "backend": result.backend,
        "counts": {state.value: result.count(state) for state in State},
        "pending": len(result.pending),
        "items": [_entry_json(entry, settings) for entry in result.entries],
    }


def _entry_json(entry: PlanEntry, settings: Settings) -> dict[str, Any]:
    collection, _, item_id = entry.key.partition("/")
    files = [f"{settings.output}/{out.file}" for out in entry.locked.outputs] if entry.locked else []
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


def _render_plan(result: Plan, settings: Settings) -> None:
    total = len(result.entries) - result.count(State.ORPHANED)
    counts = ", ".join(
        f"{result.count(state)} {state.value}"
        for state in (State.NEW, State.CHANGED, State.MISSING, State.UNCHANGED)
    )
    orphans = result.count(State.ORPHANED)
    _say(f"plan: {total} item{_s(total)}: {counts}" + (f"; {orphans} orphaned" if orphans else ""))
    shown = [entry for entry in result.entries if entry.state is not State.UNCHANGED]
    width = max((len(entry.key) for entry in shown[:_SHOWN_LINES]), default=0)
    colours = {State.NEW: "green", State.CHANGED: "yellow", State.MISSING: "cyan"}
    for entry in shown[:_SHOWN_LINES]:
        label = click.style(f"{entry.state.value:<9}", fg=colours.get(entry.state, "magenta"))
        reasons = ", ".join(entry.reasons)
        _say(f"  {label} {entry.key:<{width}}  {reasons}".rstrip())
    if len(shown) > _SHOWN_LINES:
        _say(f"  ... and {len(shown) - _SHOWN_LINES} more (`pipeline plan --json` lists all)")
    pending = len(result.pending)
    if pending:
        _say(f"next: `pipeline run` would generate or restore {pending} item{_s(pending)}")
    else:
        _say(f"nothing to do: every output in {settings.output}/ is up to date")
    if orphans:
        _say(f"`pipeline prune` removes the {orphans} orphaned item{_s(orphans)}")


def _say(message: str, **style: Any) -> None:
    color = False if os.environ.get("NO_COLOR") else None
    click.secho(message, err=True, color=color, **style)


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def main() -> None:
    """The `pipeline` console script."""
    cli(prog_name="pipeline")

