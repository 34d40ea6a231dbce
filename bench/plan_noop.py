"""No-op rerun: a 10,000-item manifest, lock current, outputs present. How long to do nothing?

Measures the whole `pipeline plan` and `pipeline run` processes (median of several runs, with
their peak RSS), GNU make deciding the same outputs are up to date (`make -q`, the floor for a
stat-based check), and, in process, plan's parts: start-up (imports), YAML parsing, validation and
expansion, lock reading, fingerprinting and the file checks. Also checks that plan wrote nothing.
Run: `python -m bench.plan_noop [--items N]`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from bench.measure import PIPELINE, repeat, run_process, spread, table
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


Row = tuple[str, list[float], float | None]  # what, seconds per repeat, peak RSS in MB


def _timed(what: str, fn: Callable[[], Any], times: int) -> Row:
    return what, repeat(fn, times), None


def _process(what: str, args: list[str], times: int) -> Row:
    samples = [run_process(args) for _ in range(times)]
    return what, [s.seconds for s in samples], max(s.peak_rss_mb for s in samples)


def _make_floor(root: Path, times: int) -> Row | None:
    """GNU make asked whether the same outputs are up to date (each depends on the manifest)."""
    if shutil.which("make") is None:
        return None
    outputs = sorted(str(p.relative_to(root)) for p in (root / "output").rglob("*.png"))
    rules = ["all: " + " ".join(outputs), "output/%.png: manifests/big.yaml", "\t@false"]
    (root / "noop.mk").write_text("\n".join(rules) + "\n")
    return _process(
        "GNU `make -q` on the same outputs (floor)",
        ["make", "-q", "-C", str(root), "-f", "noop.mk"],
        times,
    )


def _snapshot(root: Path) -> dict[str, int]:
    return {str(path): path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}


def measure(items: int, times: int) -> list[Row]:
    """One row per measurement."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        root = Path(tmp)
        build_repo(root, items)
        exe = [*PIPELINE, "-C", str(root)]
        before = _snapshot(root)
        rows.append(_process("`pipeline plan` (whole process)", [*exe, "plan"], times))
        rows.append(
            _process("`pipeline plan --json` (whole process)", [*exe, "plan", "--json"], times)
        )
        if _snapshot(root) != before:
            raise SystemExit("plan wrote or touched files: it must not")
        run_process([*exe, "run", "--backend", "local"])  # the first run writes the indexes
        rows.append(
            _process("`pipeline run` (whole process)", [*exe, "run", "--backend", "local"], times)
        )
        floor = _make_floor(root, times)
        if floor is not None:
            rows.append(floor)
        rows.append(
            _process(
                "start-up: python + imports", [sys.executable, "-c", "import pipeline.cli"], times
            )
        )
        rows.append(_process("python alone", [sys.executable, "-c", "pass"], times))
        text = (root / "manifests" / "big.yaml").read_bytes()
        source = text.decode()
        rows.append(
            _timed(
                "YAML parse (block reader, the path plan takes)",
                lambda: yamlfast.load(source),
                times,
            )
        )
        rows.append(
            _timed(
                "YAML parse (PyYAML C loader, for comparison; not used)",
                lambda: yaml.load(text, Loader=yaml.CSafeLoader),
                times,
            )
        )
        settings = load_settings(root)
        rows.append(
            _timed(
                "load + validate + expand (YAML parse included)",
                lambda: load_manifests(root, settings),
                times,
            )
        )
        collections = load_manifests(root, settings)
        all_items = collections[0].items
        rows.append(_timed("read lock", lambda: read_lock(root / "assets.lock"), times))
        rows.append(
            _timed(
                "fingerprints",
                lambda: [fingerprint_of(request_of(item, "local")) for item in all_items],
                times,
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

        rows.append(_timed("diff: fingerprints + stat checks", plan_only, times))
        os.unlink(root / STATE_DIR / "stat-cache.json")
        rows.append(_timed("diff without stat cache (hashes every file)", plan_only, times))
    return rows


def render(rows: list[Row], items: int) -> str:
    header = [f"no-op rerun, {items:,} items", "median (min-max)", "peak RSS"]
    body = [
        [what, spread(samples), "" if rss is None else f"{rss:.0f} MB"]
        for what, samples, rss in rows
    ]
    return table(header, body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    print(render(measure(args.items, args.repeat), args.items))


if __name__ == "__main__":
    main()
