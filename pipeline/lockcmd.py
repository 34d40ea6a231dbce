"""`pipeline lock ...`: commands on the lockfile itself (merge driver, rebuild).

Parses and prints only: the merge is lockmerge.py's, the rebuild rebuild.py's, each imported in
its command (cli.py imports this module on every command, which must start fast).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import click

from pipeline.console import plural, say
from pipeline.lockfile import MARKER_SIZE
from pipeline.state import STATE_DIR

if TYPE_CHECKING:
    from pipeline.lockmerge import Fallback, Merge
    from pipeline.rebuild import Rebuild

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


class _Project(Protocol):
    """cli.py's context object: the project root given by `-C`."""

    @property
    def root(self) -> Path: ...


@click.group()
def lock() -> None:
    """Commands on assets.lock: a git merge driver, and a rebuild from the files in output/."""


@lock.command()
@click.argument("base", type=_FILE)
@click.argument("ours", type=_FILE)
@click.argument("theirs", type=_FILE)
@click.option(
    "--marker-size",
    type=click.IntRange(min=1),
    default=MARKER_SIZE,
    show_default=True,
    metavar="N",
    help="Length of the conflict markers (git's %L).",
)
@click.option(
    "--path",
    "shown",
    default=None,
    metavar="P",
    help="The lockfile's path in the repo, named in messages (git's %P).  [default: OURS]",
)
def merge(base: Path, ours: Path, theirs: Path, marker_size: int, shown: str | None) -> None:
    """Git's merge driver for assets.lock: merge item by item into OURS.

    Items changed on one side only, deleted on one side and changed on the other (the change is
    kept), or regenerated on both from the same inputs (ours kept) merge cleanly; uploads and
    trainings are united. Only an item changed on both sides to different inputs is a conflict:
    its two blocks are marked in OURS and located on stderr. Exit 0 when merged cleanly, 1 when
    a conflict is left.

    \b
    Set up once per clone:
      git config merge.pipeline-lock.name "pipeline lockfile merge"
      git config merge.pipeline-lock.driver \\
        "pipeline lock merge %O %A %B --marker-size %L --path %P"
    and commit a .gitattributes line:
      assets.lock merge=pipeline-lock
    """
    from pipeline.lockmerge import Fallback, merge_files

    name = shown or str(ours)
    result = merge_files(base, ours, theirs, marker_size=marker_size, name=name)
    if isinstance(result, Fallback):
        _say_fallback(result, name)
        sys.exit(1)
    _say_merge(result, name)
    if result.conflicts:
        sys.exit(1)


def _say_merge(result: Merge, name: str) -> None:
    for note in result.notes:
        say(f"{name}: {note}")
    for conflict in result.conflicts:
        what = "added" if conflict.added else "changed"
        say(
            f"{name}:{conflict.line}: {conflict.key}: {what} on both branches "
            f"({', '.join(conflict.differences)})",
            fg="red",
        )
    counts = (
        f"{result.from_ours} item{plural(result.from_ours)} from ours, "
        f"{result.from_theirs} from theirs, {result.from_both} the same on both"
    )
    notes = f"; {len(result.notes)} note{plural(len(result.notes))}" if result.notes else ""
    if not result.conflicts:
        say(f"{name}: merged cleanly: {counts}{notes}")
        return
    count = len(result.conflicts)
    say(
        "hint: in each conflict keep the block whose inputs match the merged manifests and "
        "delete the other with the three marker lines (`pipeline plan` then tells: the wrong "
        "one shows as changed); or keep either: `pipeline run` regenerates what no longer matches"
    )
    say(f"{name}: {count} conflict{plural(count)} left; merged around them: {counts}{notes}")


def _say_fallback(result: Fallback, name: str) -> None:
    say(f"{name}: the {result.side} side {result.reason}", fg="red")
    left = f"{result.conflicts} conflict{plural(result.conflicts)} left"
    say(
        f"{name}: merged as plain text by `git merge-file` instead ({left}, markers labelled "
        "ours/base/theirs); resolve it by hand, or check out one side "
        f"(`git checkout --ours {name}`) and rerun `pipeline run`"
    )


@lock.command()
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
@click.pass_obj
def rebuild(project: _Project, dry_run: bool) -> None:
    """Rebuild a lost or broken assets.lock from output/ (no API call).

    Reads each collection's index.json and the files beside it: each item whose files are all
    there and intact is rebuilt. A readable lock keeps every entry it has (only missing items are
    added), so no record of a paid result is lost; an unreadable lock is first copied to
    .pipeline/.
    """
    from pipeline.rebuild import rebuild_lock

    result = rebuild_lock(project.root, dry_run=dry_run)
    _say_rebuild(result, dry_run)


def _say_rebuild(result: Rebuild, dry_run: bool) -> None:
    lockfile, output = result.lockfile, result.output
    for problem in result.unrecoverable:
        say(f"{problem}: not rebuilt", fg="yellow")
    if result.broken:
        say(f"{lockfile} {result.broken}", fg="yellow")
        if dry_run:
            say(f"it would be copied to {STATE_DIR}/ before it is replaced")
        else:
            say(f"copied it to {result.backup} before replacing it")
    for key in result.differs:
        say(
            f"{key}: {output}/ holds other files than {lockfile} records: the lock's entry is "
            "kept (`pipeline run` restores its files)",
            fg="yellow",
        )
    for shown in result.restorable:
        say(f"{shown} is gone: rebuilt from index.json; `pipeline run` restores it by asset id")
    rebuilt, kept, lost = len(result.rebuilt), len(result.kept), len(result.unrecoverable)
    say(
        f"rebuilt {rebuilt} item{plural(rebuilt)} from {output}/, kept {kept} from the old "
        f"lock, {lost} not recoverable"
    )
    changes = f"{len(result.added)} added"
    if not result.changed:
        say(f"{lockfile} already says exactly this: nothing to write")
    elif dry_run:
        say(f"would write {lockfile} ({changes}); dry run: nothing written")
    else:
        say(f"wrote {lockfile} ({changes})")
    say("next: `pipeline plan` shows what `pipeline run` would still generate or restore")
