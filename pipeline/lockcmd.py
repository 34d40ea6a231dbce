"""`pipeline lock ...`: commands on the lockfile itself (merge driver, rebuild)."""

from __future__ import annotations

import click


@click.group()
def lock() -> None:
    """Commands on assets.lock: a git merge driver, and a rebuild from the files in output/."""
