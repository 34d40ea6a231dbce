"""What the commands say to people: one line at a time on stderr, coloured only where it may be.

stdout is kept for `--json` documents; everything for humans goes through `say`. NO_COLOR turns
colour off everywhere; otherwise click colours a terminal and leaves pipes and files plain.
"""

from __future__ import annotations

import os
from typing import Any

import click

__all__ = ["plural", "say"]


def say(message: str, **style: Any) -> None:
    """One line for the user on stderr (`fg="red"` and the like, as click.secho)."""
    color = False if os.environ.get("NO_COLOR") else None
    click.secho(message, err=True, color=color, **style)


def plural(count: int) -> str:
    """ "s" unless `count` is 1: f"{n} item{plural(n)}"."""
    return "" if count == 1 else "s"
