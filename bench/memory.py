"""Memory: peak RSS of the project's processes, whole, from the kernel's accounting.

  run of N items        `pipeline run` of N items against the served emulator (fast jobs)
Big downloads are bench.download_rss; the 10,000-item plan's peak RSS is in bench.plan_noop.
Run: `python -m bench.memory [--items N]`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.measure import PIPELINE, Sample, run_process, table
from bench.throughput import Scenario, emulator, env_for, write_project


def _run(work: Path, name: str, items: int, size: int, concurrency: int) -> Sample:
    root = work / name
    write_project(root, items, None, size=size)
    scenario = Scenario(name, items, cap=concurrency, duration="fixed:0.05")
    with emulator(scenario) as url:
        args = [*PIPELINE, "-C", str(root), "run", "--concurrency", str(concurrency)]
        return run_process(args, env=env_for(url))


def measure(items: int) -> list[tuple[str, Sample]]:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        return [
            ("`pipeline run`, 20 items of 256x256", _run(work, "few", 20, 256, 32)),
            (f"`pipeline run`, {items:,} items of 256x256", _run(work, "many", items, 256, 32)),
        ]


def render(rows: list[tuple[str, Sample]]) -> str:
    return table(
        ["process", "peak RSS", "wall"],
        [[what, f"{s.peak_rss_mb:.0f} MB", f"{s.seconds:.1f} s"] for what, s in rows],
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--items", type=int, default=2000)
    args = parser.parse_args()
    print(render(measure(args.items)))


if __name__ == "__main__":
    main()
