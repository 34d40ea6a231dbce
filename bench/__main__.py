"""`make bench`: run every benchmark, print the tables and write BENCHMARKS.md.

`--quick` runs each with small sizes in well under a minute (its figures are not the targets'),
and leaves BENCHMARKS.md alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench import download_rss, memory, plan_noop, startup, throughput, workflow
from pipeline import __version__


@dataclass(frozen=True)
class Sizes:
    noop_items: int
    noop_repeat: int
    items: int
    cap: int
    duration: float
    run_items: int
    downloads: int
    startup_repeat: int
    peer_poll: float
    workflow_items: int
    workflow_cap: int
    workflow_duration: float


FULL = Sizes(10_000, 5, 500, 20, 1.0, 2_000, 20, 5, 2.0, 200, 10, 0.5)
QUICK = Sizes(300, 2, 12, 4, 0.2, 50, 3, 2, 0.2, 10, 4, 0.1)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("httpx", "pydantic", "pillow", "uvicorn", "scenario-sdk")
    )
    return (
        f"pipeline {__version__} ({_commit()}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}); {versions}."
    )


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "no git"
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    s = QUICK if args.quick else FULL
    began = time.perf_counter()

    def section(title: str, text: str) -> str:
        print(f"\n## {title}\n\n{text}", flush=True)
        return f"## {title}\n\n{text}\n"

    print(f"# Benchmarks\n\n{machine()}", flush=True)
    parts = [
        section(
            "1. No-op rerun",
            f"`python -m bench.plan_noop --items {s.noop_items}`: a manifest of "
            f"{s.noop_items:,} items, lockfile current, outputs present. Target: `pipeline plan` "
            "and `pipeline run` at most 1.0 s each, as whole processes. GNU make's `-q` is the "
            "floor for a stat-only check (it knows nothing of prompts, seeds or hashes).\n\n"
            + plan_noop.render(plan_noop.measure(s.noop_items, s.noop_repeat), s.noop_items),
        ),
    ]
    results, tail = throughput.measure(s.items, s.cap, s.duration, s.peer_poll)
    parts.append(
        section(
            "2-4. Throughput against the cap, unknown cap, faults",
            f"`python -m bench.throughput --items {s.items} --cap {s.cap} --duration "
            f"{s.duration:g}`: N = {s.items} items, emulator cap C = {s.cap}, job duration "
            f"L = {s.duration:g} s, served on loopback in its own process. Limit: job-seconds / C "
            f"(N/C x L when fixed) plus one lookup and download ({tail * 1000:.0f} ms). Targets: "
            "the project within 1.15x of the limit and ahead of both peers; at most 4 requests "
            "per asset (downloads included); zero duplicate paid jobs. The peers are "
            "`bench/peers/guide.py` (the integration guide's loop: submit all, then poll each "
            "every 2 s) and `bench/peers/sdk.py` (the official SDK, asyncio.gather under a "
            "semaphore of C, polling every 2 s). Under faults every contender gives up on an "
            f"answer after {throughput.REQUEST_TIMEOUT:g} s; faults: `{throughput.FAULTS}`.\n\n"
            + throughput.render(results, tail),
        )
    )
    parts.append(
        section(
            "5. Memory",
            f"`python -m bench.memory --items {s.run_items}` and `python -m bench.download_rss`. "
            "The 10,000-item plan's peak RSS is in table 1.\n\n"
            + memory.render(memory.measure(s.run_items))
            + "\n\n"
            + download_rss.render(download_rss.measure(s.downloads)),
        )
    )
    parts.append(
        section(
            "6. Start-up",
            "`python -m bench.startup`.\n\n" + startup.render(startup.measure(s.startup_repeat)),
        )
    )
    passes, floor = workflow.measure(s.workflow_items, s.workflow_cap, s.workflow_duration)
    parts.append(
        section(
            "7. The full workflow under faults",
            f"`python -m bench.workflow --items {s.workflow_items} --cap {s.workflow_cap} "
            f"--duration {s.workflow_duration:g}`: {s.workflow_items} icons from "
            f"{workflow.SKETCHES} sketches with a LoRA trained on {workflow.STYLE} images "
            f"(training {workflow.TRAINING:g} s), each then cut out and upscaled, captioned, in a "
            f"remote collection; emulator cap {s.workflow_cap}, jobs of "
            f"{s.workflow_duration:g} s, faults `{throughput.FAULTS}` on every endpoint. Four "
            "runs in a row against one emulator: the first, a no-op, the upscale factor "
            "changed, one sketch replaced. Targets: every item done, zero duplicates (generate "
            "jobs, uploads, trainings, captions), a no-op without an API call, and each change "
            "paying only for the stages it touches.\n\n"
            + workflow.render(passes, floor, s.workflow_items),
        )
    )
    took = time.perf_counter() - began
    footer = (
        f"All of it took {took / 60:.1f} min (`make bench`; `make bench-quick` for a smoke run)."
    )
    print(f"\n{footer}")
    if args.quick:
        print("(quick run: BENCHMARKS.md left as it is)", file=sys.stderr)
        return
    head = f"# Benchmarks\n\n{machine()}\n\n"
    args.out.write_text(head + "\n".join(parts) + f"\n{footer}\n")


if __name__ == "__main__":
    main()
