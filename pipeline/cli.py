"""The command line: the only module that prints or exits. It parses, calls, renders.

Contract (design.md): `--json` prints one JSON document on stdout and nothing else there; human
output goes to stderr. Exit codes: 0 ok, 1 something pending (`plan --check`) or some items
failed, 2 invalid input, 130 interrupted. Every `PipelineError` ends here with its own message.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import click

from pipeline import __version__, views
from pipeline.backend import BackendChoice, resolve_backend
from pipeline.console import plural, say
from pipeline.emulatorcmd import emulator
from pipeline.errors import InvalidInput, OverBudget, PipelineError, RunFailed, WriteError
from pipeline.lockcmd import lock
from pipeline.lockfile import Lockfile, read_lock, write_lock
from pipeline.manifest import Collection, Settings, load_manifests, load_settings
from pipeline.plan import Plan, State, plan_collections
from pipeline.state import STATE_DIR, RepoLock, StatCache

if TYPE_CHECKING:  # imported where used: `plan` and `validate` must start fast
    from pipeline.cost import CostReport
    from pipeline.report import RunReport
    from pipeline.schedule import RunOptions, RunPaths

_BACKENDS = click.Choice(["auto", "scenario", "local"])


class _Group(click.Group):
    """Ends every PipelineError with its message and exit code, and Ctrl-C with 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidInput as exc:
            say(f"error: {exc}", fg="red")
            _summarise_error(ctx, exc)
            count = len(exc.problems)
            say(f"{count} problem{plural(count)} found; nothing was generated.")
            ctx.exit(exc.exit_code)
        except PipelineError as exc:
            say(f"error: {exc}", fg="red")
            if not isinstance(exc, RunFailed):  # the run's own summary has listed them
                _summarise_error(ctx, exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            say("interrupted")
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
    say(
        f"ok: {len(collections)} manifest{plural(len(collections))}, "
        f"{items} item{plural(items)} after expansion"
    )


@cli.command()
@click.argument("select", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON on stdout.")
@click.option("--check", is_flag=True, help="Exit 1 when anything is pending (for CI).")
@click.option("--backend", type=_BACKENDS, default=None, help="Override pipeline.yaml's backend.")
@click.option(
    "--cost",
    is_flag=True,
    help="Price the items to generate with the API's dry runs (nothing is generated or paid).",
)
@click.pass_obj
def plan(
    project: _Project,
    select: tuple[str, ...],
    as_json: bool,
    check: bool,
    backend: str | None,
    cost: bool,
) -> None:
    """Show what `run` would do, and why; with --cost, what it would cost.

    SELECT is `collection` or `collection/item`; globs allowed. No API call without --cost.
    """
    settings = load_settings(project.root).with_overrides(backend=backend)
    collections = load_manifests(project.root, settings)
    choice = resolve_backend(settings.backend, os.environ, calls_api=cost)
    say(f"backend: {choice.kind} ({choice.reason})")
    result = _make_plan(project.root, settings, collections, choice, select)
    costs = _estimate(project.root, choice, settings, result, force=False) if cost else None
    if as_json:
        doc = views.plan_json(result, settings.output, costs)
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        lines = views.plan_lines(result, settings.output)
        if costs is not None:
            lines += views.cost_lines(costs, charged=choice.kind != "local")
        for line in lines:
            say(line)
    _step_summary(lambda summary: summary.plan_markdown(result, costs))
    if check and result.has_work:
        sys.exit(1)


@cli.command()
@click.argument("select", nargs=-1)
@click.option("--force", is_flag=True, help="Regenerate the selected items even if unchanged.")
@click.option("--backend", type=_BACKENDS, default=None, help="Override pipeline.yaml's backend.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Most jobs in flight (the account's cap is found by itself below this).",
)
@click.option(
    "--job-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Fail an item whose job is not done this long after submission.  [default: 1800]",
)
@click.option(
    "--budget",
    type=click.FloatRange(min=0),
    default=None,
    metavar="UNITS",
    help="Most creative units this run may spend: refused when the estimate passes it, and no "
    "new job once it would be passed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON on stdout.")
@click.pass_obj
def run(
    project: _Project,
    select: tuple[str, ...],
    force: bool,
    backend: str | None,
    concurrency: int | None,
    job_timeout: float | None,
    budget: float | None,
    as_json: bool,
) -> None:
    """Generate what the plan says, collect the files, update the lock.

    SELECT is `collection` or `collection/item`; globs allowed. Exit 0 when all is done, 1 when
    some items failed (the rest is kept), 2 on invalid input, 130 when interrupted.
    """
    settings = load_settings(project.root).with_overrides(
        backend=backend, concurrency=concurrency, job_timeout=job_timeout, budget=budget
    )
    collections = load_manifests(project.root, settings)
    choice = resolve_backend(settings.backend, os.environ)
    say(f"backend: {choice.kind} ({choice.reason})")
    root = project.root
    # Held from planning to the last write: a plan made while another run works could pay again
    # for what that run is about to lock.
    with RepoLock(root / STATE_DIR):
        lock = read_lock(root / settings.lockfile)
        result = _make_plan(root, settings, collections, choice, select, lock)
        if result.has_work or force:
            estimates = _within_budget(root, choice, settings, result, force=force)
            report = _generate(root, settings, choice, result, lock, force, estimates)
            lock = read_lock(root / settings.lockfile)
        else:
            report = _settle(root, settings, result, lock)
        _step_summary(lambda summary: summary.run_markdown(report, settings.budget))
        _finish_run(root / settings.output, collections, lock, report, as_json, choice)


def _within_budget(
    root: Path, choice: BackendChoice, settings: Settings, result: Plan, *, force: bool
) -> dict[str, float]:
    """With a budget: the dry-run estimate per fingerprint, or OverBudget when the total passes
    it. Without one: nothing to price."""
    if settings.budget is None:
        return {}
    costs = _estimate(root, choice, settings, result, force=force)
    for line in views.cost_lines(costs, charged=choice.kind != "local", budget=settings.budget):
        say(line)
    if costs.total > settings.budget:
        raise OverBudget(costs.total, settings.budget, len(costs.items) - len(costs.in_flight))
    return costs.by_fingerprint()


def _estimate(
    root: Path, choice: BackendChoice, settings: Settings, result: Plan, *, force: bool
) -> CostReport:
    """Dry-run prices of what a run of this plan would pay for; nothing is generated or paid."""
    import asyncio

    from pipeline.backend import open_client
    from pipeline.cost import estimate, paid_entries
    from pipeline.journal import Journal

    local = choice.kind == "local"
    entries = paid_entries(result.entries, restore_is_free=not local, force=force)
    intents = {} if local else Journal(root / STATE_DIR).load()
    in_flight = {fingerprint for fingerprint, intent in intents.items() if intent.job_id}

    async def price() -> CostReport:
        async with open_client(choice, os.environ, timeout=settings.request_timeout) as client:
            return await estimate(
                client,
                entries,
                trainings=result.trainings,
                root=root,
                in_flight=in_flight,
                concurrency=settings.concurrency,
                force=force,
                probes=None if local else root / STATE_DIR / "probes.json",
            )

    return asyncio.run(price())


def _summarise_error(ctx: click.Context, error: PipelineError) -> None:
    command = ctx.invoked_subcommand or ""
    _step_summary(lambda summary: summary.error_markdown(command, error))


def _step_summary(render: Callable[[ModuleType], str]) -> None:
    """Append a Markdown summary (rendered by pipeline.summary) to $GITHUB_STEP_SUMMARY when CI
    provides one."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    from pipeline import summary

    try:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(render(summary) + "\n")
    except OSError as exc:
        say(f"warning: cannot append to $GITHUB_STEP_SUMMARY ({exc.strerror})", fg="yellow")


def _settle(root: Path, settings: Settings, result: Plan, lock: Lockfile) -> RunReport:
    """Nothing to do: no scheduler, no client, no API call. What the plan learnt is kept, and
    what a killed run left (temp files, intents whose result is locked) is cleared."""
    from pipeline.files import sweep_temp_files
    from pipeline.journal import Journal, adopt_uploads
    from pipeline.report import RunReport

    state = root / STATE_DIR
    sweep_temp_files(root / settings.output, root / settings.lockfile, state)
    journal = Journal(state)
    if adopt_uploads(journal, lock):  # a killed run's finished uploads: kept, not redone
        write_lock(root / settings.lockfile, lock)
    journal.settle(lock)
    if result.hashed:
        cache = StatCache.load(root / STATE_DIR)
        for name, (stat, digest) in result.hashed.items():
            cache.remember(name, stat, digest)
        cache.save(root / STATE_DIR)
    return RunReport([], result.count(State.UNCHANGED), result.count(State.ORPHANED), 0.0)


def _generate(
    root: Path,
    settings: Settings,
    choice: BackendChoice,
    result: Plan,
    lock: Lockfile,
    force: bool,
    estimates: dict[str, float],
) -> RunReport:
    import asyncio  # here, not at the top: `plan` and `validate` must start fast

    from pipeline.backend import LOCAL_FIRST_POLL, LOCAL_POLL_FLOOR
    from pipeline.schedule import RunOptions, RunPaths

    paths = RunPaths(root / settings.lockfile, root / settings.output, root / STATE_DIR, root)
    local = choice.kind == "local"
    options = RunOptions(
        ceiling=settings.concurrency,
        job_deadline=settings.job_timeout,
        force=force,
        restore_by_regenerating=local,
        first_poll=LOCAL_FIRST_POLL if local else RunOptions.first_poll,
        first_training_poll=LOCAL_FIRST_POLL if local else RunOptions.first_training_poll,
        poll_floor=LOCAL_POLL_FLOOR if local else RunOptions.poll_floor,
        budget=settings.budget,
        estimates=estimates,
    )
    return asyncio.run(_run(choice, result, lock, paths, options, settings.request_timeout))


def _finish_run(
    output: Path,
    collections: Sequence[Collection],
    lock: Lockfile,
    report: RunReport,
    as_json: bool,
    choice: BackendChoice,
) -> None:
    """Indexes up to date, the summary shown, and the exit code the report calls for."""
    from pipeline.index import write_indexes
    from pipeline.report import Outcome

    index_error: WriteError | None = None
    try:
        write_indexes(output, collections, lock)
    except WriteError as exc:  # the outputs and the lock are in place: only an index is behind
        index_error = exc
    if as_json:
        click.echo(json.dumps(views.report_json(report), indent=2, ensure_ascii=False))
    for line in views.report_lines(report, charged=choice.kind != "local"):
        say(line)
    if report.interrupted:
        sys.exit(130)
    failures = report.failures
    if failures:
        if index_error is not None:
            say(f"error: {index_error}", fg="red")
        raise RunFailed(
            failures, done=report.count(Outcome.GENERATED) + report.count(Outcome.RESTORED)
        )
    if index_error is not None:
        raise index_error


async def _run(
    choice: BackendChoice,
    result: Plan,
    lock: Lockfile,
    paths: RunPaths,
    options: RunOptions,
    request_timeout: float,
) -> RunReport:
    import asyncio
    import signal

    from rich.console import Console

    from pipeline.backend import open_client
    from pipeline.progress import Progress, choose_live
    from pipeline.schedule import Runner

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    live = choose_live(sys.stderr, os.environ)
    console = Console(stderr=True)  # rich honours NO_COLOR itself
    total = len(result.pending) + (result.count(State.UNCHANGED) if options.force else 0)
    total += len(result.new_trainings)
    async with open_client(choice, os.environ, timeout=request_timeout) as client:
        progress = Progress(total, console=console, live=live)
        runner = Runner(
            client,
            result,
            lock,
            paths,
            options=options,
            stat_cache=StatCache.load(paths.state),
            on_event=progress,
        )

        timers: list[asyncio.TimerHandle] = []

        def on_interrupt() -> None:
            if not runner.stopping:
                runner.interrupt()
                say(
                    f"stopping: nothing new is submitted; collecting jobs in flight for up to "
                    f"{options.grace:.0f}s (Ctrl-C again to quit now; a rerun resumes them)"
                )
                timers.append(loop.call_later(options.grace, main.cancel))
            else:
                main.cancel()

        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        try:
            with progress:
                return await runner.run()
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            for timer in timers:
                timer.cancel()


@cli.command()
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.pass_obj
def prune(project: _Project, dry_run: bool) -> None:
    """Remove orphaned outputs and lock entries (items gone from the manifests)."""
    settings = load_settings(project.root)
    collections = load_manifests(project.root, settings)
    lock_path = project.root / settings.lockfile
    with RepoLock(project.root / STATE_DIR):
        _prune(project.root, settings, collections, lock_path, dry_run)


def _prune(
    root: Path,
    settings: Settings,
    collections: Sequence[Collection],
    lock_path: Path,
    dry_run: bool,
) -> None:
    lock = read_lock(lock_path)
    current = {item.key for collection in collections for item in collection.items}
    orphans = sorted(key for key in lock.items if key not in current)
    output = root / settings.output
    for key in orphans:
        for record in lock.items[key].files():  # kept intermediate results too
            say(f"{'would remove' if dry_run else 'removed'} {settings.output}/{record.file}")
            if not dry_run:
                (output / record.file).unlink(missing_ok=True)
        if not dry_run:
            del lock.items[key]
    if not dry_run:
        write_lock(lock_path, lock)
    verb = "would prune" if dry_run else "pruned"
    say(f"{verb} {len(orphans)} orphaned item{plural(len(orphans))}")


def _make_plan(
    root: Path,
    settings: Settings,
    collections: Sequence[Collection],
    choice: BackendChoice,
    select: Sequence[str],
    lock: Lockfile | None = None,
) -> Plan:
    return plan_collections(
        collections,
        read_lock(root / settings.lockfile) if lock is None else lock,
        backend=choice.kind,
        output_dir=root / settings.output,
        stat_cache=StatCache.load(root / STATE_DIR),
        remote_default=settings.remote_collection,
        select=select,
        output_label=settings.output,
    )


cli.add_command(lock)
cli.add_command(emulator)


def main() -> None:
    """The `pipeline` console script."""
    cli(prog_name="pipeline")
