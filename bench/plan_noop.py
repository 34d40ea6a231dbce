"""No-op plan: a 10,000-item manifest, lock current, outputs present. How long does `plan` take?

Measures the whole `pipeline plan` process (median of several runs) and, in process, its parts:
start-up (imports), YAML parsing, validation and expansion, lock reading, fingerprinting and the
file checks. Also checks that nothing was written. Run: `python -m bench.plan_noop [--items N]`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from pipeline import yamlfast
from pipeline.lockfile import LockEntry, OutputRecord, read_lock, write_lock
from pipeline.manifest import load_manifests, load_settings
from pipeline.plan import State, fingerprint_of, make_plan, request_of
from pipeline.state import STATE_DIR, StatCache


def build_repo(root: Path, items: int) -> None:
    """A repo with one manifest of `items` items, settled: files, lock and stat cache present."""
    lines = [
        "collection: big",
        "defaults:",
        "  model: model_bfl-flux-2-dev",
        "  width: 512",
        "  height: 512",
        "  params: {guidance: 3.5}",
        "items:",
    ]
    for n in range(items):
        lines += [f"  - id: item-{n:05d}", f"    prompt: game icon number {n}, pixel art"]
        if n % 2:
            lines.append(f"    seed: {n}")
    (root / "manifests").mkdir(parents=True)
    (root / "manifests" / "big.yaml").write_text("\n".join(lines) + "\n")
    settings = load_settings(root)
    collections = load_manifests(root, settings)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 40, 160)).save(buffer, format="PNG")
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    lock = read_lock(root / settings.lockfile)
    out = root / settings.output / "big"
    out.mkdir(parents=True)
    cache = StatCache()
    for item in collections[0].items:
        request = request_of(item, "local")
        path = out / f"{item.id}.png"
        path.write_bytes(data)
        cache.remember(f"big/{item.id}.png", path.stat(), digest)
        lock.items[item.key] = LockEntry(
            fingerprint=fingerprint_of(request),
            request=request,
            seed_derived=item.seed_derived,
            outputs=(
                OutputRecord(
                    file=f"big/{item.id}.png", sha256=digest, size=len(data), width=8, height=8
                ),
            ),
        )
    write_lock(root / settings.lockfile, lock)
    cache.save(root / STATE_DIR)


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, list[float]]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), samples


def _process(args: list[str], repeat: int) -> tuple[float, list[float]]:
    def once() -> None:
        subprocess.run(args, check=True, capture_output=True)

    return _timed(once, repeat)


def _snapshot(root: Path) -> dict[str, int]:
    return {str(path): path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}


def measure(items: int, repeat: int) -> list[tuple[str, float, list[float]]]:
    """Rows of (what, median seconds, samples)."""
    rows: list[tuple[str, float, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        root = Path(tmp)
        build_repo(root, items)
        exe = [sys.executable, "-m", "pipeline", "-C", str(root)]
        before = _snapshot(root)
        rows.append(("`pipeline plan` (whole process)", *_process([*exe, "plan"], repeat)))
        rows.append(
            ("`pipeline plan --json` (whole process)", *_process([*exe, "plan", "--json"], repeat))
        )
        if _snapshot(root) != before:
            raise SystemExit("plan wrote or touched files: it must not")
        rows.append(
            (
                "start-up: python + imports",
                *_process([sys.executable, "-c", "import pipeline.cli"], repeat),
            )
        )
        rows.append(("python alone", *_process([sys.executable, "-c", "pass"], repeat)))
        text = (root / "manifests" / "big.yaml").read_bytes()
        source = text.decode()
        rows.append(
            (
                "YAML parse (block reader, the path plan takes)",
                *_timed(lambda: yamlfast.load(source), repeat),
            )
        )
        rows.append(
            (
                "YAML parse (PyYAML C loader, for comparison; not used)",
                *_timed(lambda: yaml.load(text, Loader=yaml.CSafeLoader), repeat),
            )
        )
        settings = load_settings(root)
        rows.append(
            (
                "load + validate + expand (YAML parse included)",
                *_timed(lambda: load_manifests(root, settings), repeat),
            )
        )
        collections = load_manifests(root, settings)
        all_items = collections[0].items
        rows.append(("read lock", *_timed(lambda: read_lock(root / "assets.lock"), repeat)))
        rows.append(
            (
                "fingerprints",
                *_timed(
                    lambda: [fingerprint_of(request_of(item, "local")) for item in all_items],
                    repeat,
                ),
            )
        )
        lock = read_lock(root / "assets.lock")

        def plan_only() -> None:
            result = make_plan(
                all_items,
                lock,
                backend="local",
                output_dir=root / "output",
                stat_cache=StatCache.load(root / STATE_DIR),
            )
            assert result.count(State.UNCHANGED) == items, "the repo is not settled"

        rows.append(("diff: fingerprints + stat checks", *_timed(plan_only, repeat)))
        os.unlink(root / STATE_DIR / "stat-cache.json")
        rows.append(("diff without stat cache (hashes every file)", *_timed(plan_only, repeat)))
    return rows


def render(rows: list[tuple[str, float, list[float]]], items: int) -> str:
    lines = [
        f"| no-op plan, {items:,} items | median | min | max |",
        "|---|---:|---:|---:|",
    ]
    for what, median, samples in rows:
        lines.append(
            f"| {what} | {median * 1000:.0f} ms | {min(samples) * 1000:.0f} ms "
            f"| {max(samples) * 1000:.0f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    print(render(measure(args.items, args.repeat), args.items))


if __name__ == "__main__":
    main()
