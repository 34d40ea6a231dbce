"""`make bench`: run every benchmark, print the tables and write BENCHMARKS.md.

`--quick` runs each with small sizes in well under a minute (its figures are not the targets').
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from bench import plan_noop
from pipeline import __version__


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    items, repeat = (500, 3) if args.quick else (10_000, 7)
    sections = [
        "# Benchmarks",
        "",
        f"pipeline {__version__}, Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs. Reproduce with `make bench` (`make bench-quick` for a smoke run).",
        "",
        "## No-op plan",
        "",
        "Command: `python -m bench.plan_noop --items 10000`. A manifest of N items, lockfile "
        "current, outputs present, stat cache warm; target: whole process at most 1.0 s.",
        "",
        plan_noop.render(plan_noop.measure(items, repeat), items),
        "",
    ]
    text = "\n".join(sections)
    print(text)
    if args.quick:
        print("(quick run: BENCHMARKS.md left as it is)", file=sys.stderr)
    else:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
