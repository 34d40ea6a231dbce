"""The progress display: exact plain lines, a live panel that renders, and when each is chosen."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from pipeline.progress import Progress, choose_live
from pipeline.report import Event

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_mode_prints_one_exact_line_per_event() -> None:
    out, clock = io.StringIO(), FakeClock()
    console = Console(file=out, force_terminal=False, no_color=True, width=40)
    with Progress(2, console=console, live=False, clock=clock) as progress:
        progress(Event("submitted", "props/barrel", "job-1"))
        clock.now += 1.25
        progress(Event("retry", "props/crate", "503 from the API (again in 2.0s)"))
        progress(Event("attached", "props/crate", "job-2"))
        clock.now += 10
        progress(Event("generated", "props/barrel", "1 file(s)"))
        long = "job job-2 failed: [bold]NSFW[/bold] content :smile: " + "x" * 60
        progress(Event("failed", "props/crate", long))
    assert out.getvalue().splitlines() == [
        "[0/2   0.0s] submitted props/barrel",
        "[0/2   1.2s] retry     props/crate: 503 from the API (again in 2.0s)",
        "[0/2   1.2s] attached  props/crate: job-2",
        "[1/2  11.2s] generated props/barrel",
        f"[2/2  11.2s] failed    props/crate: {long}",
    ]
    assert "\x1b" not in out.getvalue()


def test_live_mode_renders_counts_eta_and_the_full_failure() -> None:
    out, clock = io.StringIO(), FakeClock()
    console = Console(file=out, force_terminal=True, width=100)
    detail = "job job-9 failed: " + " ".join(f"word{i}" for i in range(40)) + " -- fix the prompt"
    with Progress(4, console=console, live=True, clock=clock) as progress:
        for key in ("a", "b", "c"):
            progress(Event("submitted", f"props/{key}", "job"))
        progress(Event("retry", "props/d", "503 from the API (again in 1.0s) " + "y" * 100))
        clock.now += 10
        progress(Event("generated", "props/a", "1 file(s)"))
        progress(Event("restored", "props/e", "1 file(s)"))  # never submitted
        progress(Event("failed", "props/b", detail))
    text = _ANSI.sub("", out.getvalue())
    assert "1 generated, 1 restored, 1 failed, 1 in flight, 1 retry" in text
    assert "3/4  0:10 elapsed  ETA 0:03" in text
    retry = next(line for line in text.splitlines() if "props/d" in line)
    assert retry.startswith("[0/4   0.0s] retry     props/d: 503 from the API")
    assert retry.endswith("…")  # a retry is cropped to one line; a failure is shown in full
    squeezed = "".join(text.split())
    assert "".join(f"[3/4 10.0s] failed props/b: {detail}".split()) in squeezed


def test_an_item_the_budget_kept_from_starting_counts_as_done_and_says_why() -> None:
    out, clock = io.StringIO(), FakeClock()
    console = Console(file=out, force_terminal=True, width=120)
    with Progress(2, console=console, live=True, clock=clock) as progress:
        progress(Event("generated", "props/a", "1 file(s)"))
        progress(Event("skipped", "props/b", "not started: 10 of the budget of 10 are spent"))
    text = _ANSI.sub("", out.getvalue())
    assert "1 generated, 0 restored, 0 failed, 1 not started, 0 in flight" in text
    assert "[2/2   0.0s] skipped   props/b: not started: 10 of the budget of 10" in text
    assert "2/2  0:00 elapsed  done" in text


def test_live_mode_with_nothing_to_do_does_not_raise() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with Progress(0, console=console, live=True, clock=FakeClock()):
        pass
    assert "0/0" in _ANSI.sub("", out.getvalue())


@pytest.mark.parametrize(
    ("tty", "environ", "expected"),
    [
        (True, {"TERM": "xterm-256color"}, True),
        (True, {}, True),
        (False, {"TERM": "xterm-256color"}, False),
        (True, {"TERM": "xterm", "NO_COLOR": "1"}, False),
        (True, {"TERM": "dumb"}, False),
        (True, {"TERM": "xterm", "CI": "true"}, False),
        (True, {"TERM": "xterm", "NO_COLOR": "", "CI": ""}, True),
    ],
)
def test_chooses_live_only_on_a_capable_interactive_terminal(
    tty: bool, environ: dict[str, str], expected: bool
) -> None:
    stream = FakeTty() if tty else io.StringIO()
    assert choose_live(stream, environ) is expected
