"""Start-up: `pipeline --help`, and `pipeline plan` / `pipeline validate` on a one-item manifest.

What a user waits for on every small command, measured as whole processes (median of several).
Run: `python -m bench.startup`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.measure import PIPELINE, run_process, spread, table

MANIFEST = """\
collection: icons
items:
  - id: sword
    prompt: iron sword icon, pixel art
    model: model_bfl-flux-2-dev
"""


def measure(times: int) -> list[tuple[str, list[float], float]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        root = Path(tmp)
        (root / "manifests").mkdir()
        (root / "manifests" / "icons.yaml").write_text(MANIFEST)
        commands = [
            ("python alone", [sys.executable, "-c", "pass"]),
            ("`pipeline --help`", [*PIPELINE, "--help"]),
            ("`pipeline validate`, one item", [*PIPELINE, "-C", str(root), "validate"]),
            ("`pipeline plan`, one item", [*PIPELINE, "-C", str(root), "plan"]),
        ]
        for what, args in commands:
            samples = [run_process(args) for _ in range(times)]
            rows.append((what, [s.seconds for s in samples], max(s.peak_rss_mb for s in samples)))
    return rows


def render(rows: list[tuple[str, list[float], float]]) -> str:
    return table(
        ["command", "median (min-max)", "peak RSS"],
        [[what, spread(samples), f"{rss:.0f} MB"] for what, samples, rss in rows],
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--repeat", type=int, default=9)
    print(render(measure(parser.parse_args().repeat)))


if __name__ == "__main__":
    main()
