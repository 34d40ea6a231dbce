"""Progress: how a run is going, shown on stderr while it runs. It owns no run state of its own.

On a terminal a rich Live panel (counts, bar, ETA) with failures and retries printed above it;
elsewhere (CI, pipes, NO_COLOR, TERM=dumb) one plain line per event. Events arrive on the asyncio
loop thread while Live repaints from its own, so `__call__` only counts; drawing happens at refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import IO, Any, Self

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pipeline.report import Event

_FINISHED = ("generated", "restored", "trained", "failed", "skipped")
_DETAILED = ("failed", "retry", "attached", "skipped")


def choose_live(stream: IO[Any], environ: Mapping[str, str]) -> bool:
    """Whether `stream` gets the live display: a TTY, colour allowed, a capable terminal, not CI."""
    return (
        stream.isatty()
        and not environ.get("NO_COLOR")
        and environ.get("TERM") != "dumb"
        and not environ.get("CI")
    )


class Progress:
    """Renders a run's events. Use as a context manager around the run; pass it as `on_event`."""

    def __init__(
        self,
        total: int,
        *,
        console: Console,
        live: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self._console = console
        self._clock = clock
        self._started = clock()
        self._counts = dict.fromkeys(_FINISHED, 0)
        self._retries = 0
        self._in_flight: set[str] = set()  # by key: a restore finishes without being submitted
        self._live = (
            Live(
                console=console,
                refresh_per_second=4,
                transient=False,
                get_renderable=self._render,
            )
            if live
            else None
        )

    @property
    def done(self) -> int:
        return sum(self._counts.values())

    def __enter__(self) -> Self:
        self._started = self._clock()
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.stop()  # draws the final frame, which stays on screen

    def __call__(self, event: Event) -> None:
        """Count one event; print it (plain) or, if notable, print it above the live panel."""
        if event.kind in _FINISHED:
            self._counts[event.kind] += 1
            self._in_flight.discard(event.key)
        elif event.kind in ("submitted", "attached"):
            self._in_flight.add(event.key)
        elif event.kind == "retry":
            self._retries += 1
        if self._live is None:
            self._console.out(self._line(event), highlight=False)
        elif event.kind in ("failed", "skipped"):  # actionable: wrapped, never cut
            style = "red" if event.kind == "failed" else "yellow"
            self._live.console.print(Text(self._line(event), style=style))
        elif event.kind == "retry":
            line = Text(self._line(event), style="yellow")
            self._live.console.print(line, no_wrap=True, overflow="ellipsis")

    def _line(self, event: Event) -> str:
        elapsed = self._clock() - self._started
        line = f"[{self.done}/{self.total} {elapsed:5.1f}s] {event.kind:<9} {event.key}"
        if event.detail and event.kind in _DETAILED:
            line += f": {event.detail}"
        return line

    def _render(self) -> RenderableType:
        """The live panel; called by Live's refresh thread, so it only reads."""
        done, elapsed = self.done, self._clock() - self._started
        counts = Text.assemble(
            (f"{self._counts['generated']} generated", "green"),
            ", ",
            (f"{self._counts['restored']} restored", "cyan"),
            ", ",
            (f"{self._counts['failed']} failed", "red" if self._counts["failed"] else ""),
            f", {self._counts['skipped']} not started" if self._counts["skipped"] else "",
            f", {self._counts['trained']} trained" if self._counts["trained"] else "",
            f", {len(self._in_flight)} in flight, ",
            (f"{self._retries} retr{'y' if self._retries == 1 else 'ies'}", "yellow"),
        )
        if done >= self.total:
            eta = "done"
        elif done == 0 or elapsed <= 0:
            eta = "ETA --"
        else:
            eta = f"ETA {_duration(elapsed / done * (self.total - done))}"
        bar = Table.grid(padding=(0, 1))
        bar.add_column(width=40)
        bar.add_column()
        bar.add_row(
            ProgressBar(total=max(self.total, 1), completed=done),
            f"{done}/{self.total}  {_duration(elapsed)} elapsed  {eta}",
        )
        return Group(counts, bar)


def _duration(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` past an hour."""
    hours, rest = divmod(round(max(seconds, 0.0)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
