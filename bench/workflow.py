"""The full asset workflow at scale, under faults: uploads, a training, chains, captions.

N icons, each drawn from one of ten sketches with a LoRA trained on eight style images, then
background removal and a 2x upscale, captioned, kept in a remote collection. The emulator runs in
its own process on loopback with a parallel cap C, jobs of L seconds, a training of T seconds, and
20% of requests failing on every endpoint (generate, jobs, assets, downloads, models). `pipeline
run` goes as a whole process, four times:

  first     everything: 18 uploads, 1 training, 3N generate jobs, N captions
  no-op     nothing changed: no API call at all
  upscale   the upscale factor changed: N upscale jobs, nothing else
  sketch    one sketch replaced: its N/10 items rerun from the generation (3 jobs each)

Each run must end with every item done and the emulator's counters at zero duplicates: no
generate request, upload, training or caption paid (or sent) twice. The floor of the first run is
the training, then the three jobs of an item back to back (3L), then the rest at C jobs at a time.

Run: `python -m bench.workflow [--items N] [--cap C] [--duration L]`.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import PIPELINE, run_process, table
from bench.throughput import FAULTS, REQUEST_TIMEOUT, Scenario, emulator, env_for, stats
from pipeline.emulator.render import placeholder

SKETCHES, STYLE = 10, 8
TRAINING = 3.0


@dataclass(frozen=True)
class Pass:
    name: str
    seconds: float
    peak_rss_mb: float
    counts: dict[str, int]
    stats: dict[str, Any]
    exit_code: int

    def jobs(self) -> int:
        return sum(self.stats.get("generates", {}).values())


def write_project(root: Path, items: int) -> None:
    """The game: a training, sketches, N chained and captioned icons."""
    refs = root / "refs"
    (refs / "style").mkdir(parents=True)
    for n in range(STYLE):
        data = placeholder(prompt=f"style {n}", seed=n, output_index=0, width=128, height=128)
        (refs / "style" / f"s{n}.png").write_bytes(data)
    for n in range(SKETCHES):
        data = placeholder(
            prompt=f"sketch {n}", seed=100 + n, output_index=0, width=256, height=256
        )
        (refs / f"sketch-{n}.png").write_bytes(data)
    lines = [
        "collection: icons",
        "remote_collection: true",
        "train:",
        "  - {name: style, images: 'refs/style/*.png', params: {maxTrainSteps: 400}}",
        "defaults:",
        "  model: model_bfl-flux-2-dev",
        "  lora: style",
        "  width: 256",
        "  height: 256",
        "  strength: 0.6",
        "  caption: true",
        "  then:",
        "    - model: photoroom-background-remover",
        "    - {model: model_upscale-v3, params: {scale: 2}}",
        "items:",
    ]
    for n in range(items):
        lines += [
            f"  - id: icon-{n:04d}",
            f"    prompt: bench icon {n}, pixel art",
            f"    seed: {n + 1}",
            f"    image: refs/sketch-{n % SKETCHES}.png",
        ]
    (root / "manifests").mkdir()
    (root / "manifests" / "icons.yaml").write_text("\n".join(lines) + "\n")
    (root / "pipeline.yaml").write_text(f"request_timeout: {REQUEST_TIMEOUT}\n")


def _run(name: str, root: Path, url: str, cap: int) -> Pass:
    args = [*PIPELINE, "-C", str(root), "run", "--json", "--concurrency", str(cap)]
    before = stats(url)
    sample = run_process(args, env=env_for(url), check=False)
    after = stats(url)
    if sample.returncode not in (0, 1):
        raise SystemExit(f"pipeline failed ({sample.returncode}):\n{sample.stderr[-2000:]}")
    doc = json.loads(sample.stdout)
    return Pass(name, sample.seconds, sample.peak_rss_mb, doc["counts"], _delta(before, after),
                sample.returncode)  # fmt: skip


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The counters one run added (the emulator's stay up for all four runs)."""
    delta: dict[str, Any] = {}
    for name in ("generates", "paid", "uploads", "requests"):
        old = before.get(name, {})
        delta[name] = {k: v - old.get(k, 0) for k, v in after.get(name, {}).items()
                       if v - old.get(k, 0)}  # fmt: skip
    delta["duplicates"] = sum(
        after[f"duplicate_{kind}"] - before[f"duplicate_{kind}"]
        for kind in ("generates", "uploads", "paid")
    )
    delta["billed"] = after["billed"] - before["billed"]
    delta["faults"] = sum(after["faults"].values()) - sum(before["faults"].values())
    return delta


def measure(
    items: int, cap: int, duration: float, training: float = TRAINING, faults: str = FAULTS
) -> tuple[list[Pass], float]:
    """The four runs against one faulty emulator; and the first run's floor."""
    scenario = Scenario("workflow", items, cap, f"fixed:{duration:g}", faults=faults)
    passes = []
    with tempfile.TemporaryDirectory(prefix="bench-workflow-") as work:
        root = Path(work) / "game"
        root.mkdir()
        write_project(root, items)
        with emulator(scenario, training=f"fixed:{training:g}") as url:
            passes.append(_run("first", root, url, cap))
            passes.append(_run("no-op", root, url, cap))
            manifest = root / "manifests" / "icons.yaml"
            manifest.write_text(manifest.read_text().replace("scale: 2", "scale: 4"))
            passes.append(_run("upscale 2x -> 4x", root, url, cap))
            sketch = placeholder(prompt="new sketch", seed=999, output_index=0, width=256,
                                 height=256)  # fmt: skip
            (root / "refs" / "sketch-3.png").write_bytes(sketch)
            passes.append(_run("one sketch replaced", root, url, cap))
    floor = training + 3 * duration + math.ceil(max(0, 3 * items - 3 * cap) / cap) * duration
    return passes, floor


def render(passes: list[Pass], floor: float, items: int) -> str:
    rows = []
    for run in passes:
        requests = sum(run.stats["requests"].values())
        done = run.counts["generated"] + run.counts["restored"]
        rows.append(
            [
                run.name,
                f"{run.seconds:.1f}",
                f"{done}/{run.counts['failed']}",
                str(run.jobs()),
                str(sum(run.stats["uploads"].values())),
                str(sum(v for k, v in run.stats["paid"].items() if k.startswith("training"))),
                str(sum(v for k, v in run.stats["paid"].items() if k.startswith("caption"))),
                str(requests),
                str(run.stats["faults"]),
                str(run.stats["duplicates"]),
                f"{run.stats['billed']:g}",
                f"{run.peak_rss_mb:.0f}",
            ]
        )
    header = [
        "run", "wall s", "done/failed", "generate jobs", "uploads", "trainings", "captions",
        "requests", "faults", "duplicates", "billed", "peak MB",
    ]  # fmt: skip
    first = passes[0]
    note = (
        f"\n\nFirst run: {first.seconds:.1f} s for {items} items, floor {floor:.1f} s (the "
        f"training, one item's three jobs back to back, the rest {items * 3} jobs at the cap), "
        f"{first.seconds / floor:.2f}x."
    )
    return table(header, rows) + note


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workflow", description=__doc__)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--cap", type=int, default=10)
    parser.add_argument("--duration", type=float, default=0.5)
    args = parser.parse_args()
    passes, floor = measure(args.items, args.cap, args.duration)
    print(render(passes, floor, args.items))


if __name__ == "__main__":
    main()
