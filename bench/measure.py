"""What every benchmark needs: whole-process timing with peak memory, medians, tables.

A process is timed from spawn to exit; its peak RSS comes from the kernel's own accounting of
that one child (`os.wait4`), so it is exact and costs nothing while the process runs. A child
forked from this (large) process would be charged this process's pages until it execs, so a
small wrapper interpreter does the fork, the timing and the accounting.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PIPELINE = [sys.executable, "-m", "pipeline"]
_WRAPPER = """
import os, sys, time
report, args = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(args[0], args)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(report, "w") as handle:
    handle.write(f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_process(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> Sample:
    """Run `args` to its end: wall time, peak RSS, output. SystemExit if it fails and `check`."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as report,
    ):
        wrapper = [sys.executable, "-c", _WRAPPER, report.name, *args]
        subprocess.run(wrapper, env=env, cwd=cwd, stdout=out, stderr=err, check=True)
        seconds, rss_kib, returncode = report.read().split()
        out.seek(0)
        err.seek(0)
        sample = Sample(
            float(seconds),
            int(rss_kib) / 1024,  # Linux reports KiB
            int(returncode),
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )
    if check and sample.returncode != 0:
        raise SystemExit(
            f"benchmark command failed ({sample.returncode}): {' '.join(args)}\n{sample.stderr}"
        )
    return sample


def repeat(fn: Callable[[], Any], times: int) -> list[float]:
    """Seconds taken by each of `times` calls of fn."""
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def spread(samples: Sequence[float], unit: str = "ms") -> str:
    """'median (min-max)' in ms or s."""
    scale, fmt = (1000, "{:.0f}") if unit == "ms" else (1, "{:.1f}")
    med = fmt.format(statistics.median(samples) * scale)
    if len(samples) == 1:
        return f"{med} {unit}"
    low, high = fmt.format(min(samples) * scale), fmt.format(max(samples) * scale)
    return f"{med} {unit} ({low}-{high})"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; numbers right-aligned after the first column."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" + "---:|" * (len(header) - 1),
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
