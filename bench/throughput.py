"""Throughput against the account's parallel cap: the project, the two peers, and the limit.

N items of one model, the emulator served on loopback (`pipeline emulator`, its own process) with
a parallel-job cap C and a job duration L. Each contender runs as a whole process against a fresh
emulator; the emulator's counters give requests, 429s, duplicate paid jobs and the in-flight
series. The limit is the best any client could do: the job-seconds the emulator ran divided by C
(N/C x L for a fixed L), plus one download. Scenarios (figures 2-4 of the benchmark issue):

  cap known     the project's ceiling is C; fixed L, then L drawn from a distribution
  cap unknown   the project's ceiling is far above C: it must find C from the 429s
  faults        20% of requests fail (500, 503, dropped connections, timeouts)

Run: `python -m bench.throughput [--items N] [--cap C] [--duration L]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.measure import PIPELINE, run_process, table
from pipeline.lockfile import read_lock

MODEL = "model_bfl-flux-2-dev"
SIZE = 512
KEY = SECRET = "bench"
# 20% of requests fail on every endpoint; the answers that time out come after 3 s, and every
# contender is told to give up on an answer after 2 s (the SDK's own default would be 60 s).
FAULTS = "error_500=0.06,error_503=0.05,drop=0.05,timeout=0.04,timeout_delay=3"
REQUEST_TIMEOUT = 2.0


@dataclass(frozen=True)
class Scenario:
    name: str
    items: int
    cap: int
    duration: str  # an emulator --job-duration spec
    faults: str = ""
    ceiling: int | None = None  # the project's --concurrency; None: the cap (known)


@dataclass
class Result:
    contender: str
    scenario: Scenario
    seconds: float
    done: int
    failed: int
    peak_rss_mb: float
    stats: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0  # emulator-clock time the contender's process was spawned

    @property
    def job_seconds(self) -> float:
        spent = self.stats.get("in_flight_seconds", {})
        return sum(int(level) * seconds for level, seconds in spent.items())

    def limit(self, download: float) -> float:
        """The best wall time any client could reach on the work this run did."""
        fixed = _fixed_duration(self.scenario.duration)
        if fixed is not None:
            return math.ceil(self.scenario.items / self.scenario.cap) * fixed + download
        return self.job_seconds / self.scenario.cap + download

    @property
    def requests(self) -> int:
        return sum(self.stats.get("requests", {}).values())

    @property
    def api_requests(self) -> int:
        return sum(n for k, n in self.stats.get("requests", {}).items() if "/v1/" in k)

    def to_reach(self, share: float) -> float | None:
        """Seconds from spawn until `share` of the cap was first in flight."""
        goal = math.ceil(share * self.scenario.cap)
        for t, level in self.stats.get("in_flight_series", []):
            if level >= goal:
                return t - self.started
        return None


def _fixed_duration(spec: str) -> float | None:
    text = spec.removeprefix("fixed:")
    try:
        return float(text)
    except ValueError:
        return None


@contextlib.contextmanager
def emulator(scenario: Scenario, seed: int = 7, training: str | None = None) -> Iterator[str]:
    """A fresh `pipeline emulator` process on a free loopback port; yields its base URL."""
    args = [*PIPELINE, "emulator", "--port", "0", "--key", KEY, "--secret", SECRET]
    args += ["--parallel-cap", str(scenario.cap), "--job-duration", scenario.duration]
    if training is not None:
        args += ["--training-duration", training]
    args += ["--seed", str(seed)]
    if scenario.faults:
        args += ["--faults", scenario.faults]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert process.stderr is not None
    try:
        line = process.stderr.readline()
        if "serving " not in line:
            raise SystemExit(f"the emulator did not start: {line}{process.stderr.read()}")
        yield line.split("serving ", 1)[1].split()[0]
    finally:
        process.terminate()
        process.wait(10)
        process.stderr.close()


def stats(url: str) -> dict[str, Any]:
    root = url.removesuffix("/v1")
    doc: dict[str, Any] = httpx.get(f"{root}/_emulator/stats", auth=(KEY, SECRET)).json()
    return doc


def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    env.update(SCENARIO_BASE_URL=url, SCENARIO_API_KEY=KEY, SCENARIO_API_SECRET=SECRET)
    env["NO_COLOR"] = "1"
    return env


def write_project(root: Path, items: int, request_timeout: float | None, size: int = SIZE) -> Path:
    """A game repo with one manifest of `items` items; also the same items as the peers' JSON."""
    lines = [
        "collection: bench",
        "defaults:",
        f"  model: {MODEL}",
        f"  width: {size}",
        f"  height: {size}",
        "items:",
    ]
    peers = []
    for n in range(items):
        prompt = f"bench icon {n}, pixel art"
        lines += [f"  - id: item-{n:04d}", f"    prompt: {prompt}", f"    seed: {n + 1}"]
        body = {"prompt": prompt, "seed": n + 1, "width": size, "height": size, "numOutputs": 1}
        peers.append({"id": f"item-{n:04d}", "model": MODEL, "body": body})
    (root / "manifests").mkdir(parents=True)
    (root / "manifests" / "bench.yaml").write_text("\n".join(lines) + "\n")
    if request_timeout is not None:
        (root / "pipeline.yaml").write_text(f"request_timeout: {request_timeout}\n")
    items_file = root / "items.json"
    items_file.write_text(json.dumps(peers))
    return items_file


def run_contender(contender: str, scenario: Scenario, work: Path, poll: float = 2.0) -> Result:
    """One contender against a fresh emulator: wall time, outcome, the emulator's counters."""
    timeout = REQUEST_TIMEOUT if scenario.faults else None
    root = work / f"{scenario.name}-{contender}".replace(" ", "-")
    items_file = write_project(root, scenario.items, timeout)
    with emulator(scenario) as url:
        if contender == "pipeline":
            ceiling = scenario.ceiling or scenario.cap
            args = [*PIPELINE, "-C", str(root), "run", "--json", "--concurrency", str(ceiling)]
        else:
            args = [sys.executable, "-m", f"bench.peers.{contender}", "--items", str(items_file)]
            args += ["--out", str(root / "out"), "--poll", str(poll)]
            if contender == "sdk":
                args += ["--concurrency", str(scenario.cap)]
            if timeout is not None:
                args += ["--timeout", str(timeout)]
        started = time.time()  # the emulator's clock is the host's wall clock
        sample = run_process(args, env=env_for(url), check=False)
        counters = stats(url)
    if sample.returncode not in (0, 1):
        raise SystemExit(f"{contender} failed ({sample.returncode}):\n{sample.stderr[-2000:]}")
    if contender == "pipeline":
        counts = json.loads(sample.stdout)["counts"]
        done, failed = counts["generated"], counts["failed"]
    else:
        summary = json.loads(sample.stdout.strip().splitlines()[-1])
        done, failed = summary["done"], summary["failed"]
    return Result(
        contender, scenario, sample.seconds, done, failed, sample.peak_rss_mb, counters, started
    )


def download_time(work: Path) -> float:
    """How long one asset lookup and download takes: the tail every limit includes."""
    scenario = Scenario("probe", items=1, cap=1, duration="fixed:0.05")
    root = work / "probe"
    write_project(root, 1, None)
    with emulator(scenario) as probe:
        run_process([*PIPELINE, "-C", str(root), "run"], env=env_for(probe))
        (entry,) = read_lock(root / "assets.lock").items.values()
        asset = entry.outputs[0].asset_id
        with httpx.Client(base_url=probe, auth=(KEY, SECRET)) as client:
            start = time.perf_counter()
            found = client.get(f"/assets/{asset}").json()["asset"]["url"]
            client.get(found).raise_for_status()
            return time.perf_counter() - start


def scenarios(items: int, cap: int, duration: float) -> list[tuple[Scenario, list[str]]]:
    spread = f"uniform:{duration * 0.5:g},{duration * 1.5:g}"
    everyone = ["pipeline", "guide", "sdk"]
    return [
        (Scenario("cap known, L fixed", items, cap, f"fixed:{duration:g}"), everyone),
        (Scenario(f"cap known, L {spread}", items, cap, spread), everyone),
        (
            Scenario("cap unknown", items, cap, f"fixed:{duration:g}", ceiling=cap * 50),
            ["pipeline"],
        ),
        (Scenario("faults 20%", items, cap, f"fixed:{duration:g}", faults=FAULTS), everyone),
    ]


def measure(items: int, cap: int, duration: float, poll: float = 2.0) -> tuple[list[Result], float]:
    """Every scenario's contenders; `poll` is the peers' polling interval (2 s, as written)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        work = Path(tmp)
        tail = download_time(work)
        for scenario, contenders in scenarios(items, cap, duration):
            for contender in contenders:
                result = run_contender(contender, scenario, work, poll)
                print(f"  {scenario.name} / {contender}: {result.seconds:.1f} s", file=sys.stderr)
                results.append(result)
    return results, tail


def render(results: list[Result], tail: float) -> str:
    rows = []
    for r in results:
        limit = r.limit(tail)
        reach = r.to_reach(0.9)
        rows.append(
            [
                r.scenario.name,
                r.contender,
                f"{r.seconds:.1f} s",
                f"{limit:.1f} s",
                f"{r.seconds / limit:.2f}x",
                f"{r.done}/{r.scenario.items}",
                f"{r.requests / max(1, r.done):.2f}",
                f"{r.api_requests / max(1, r.done):.2f}",
                r.stats.get("rate_limited", 0),
                r.stats.get("duplicate_generates", 0),
                r.stats.get("max_in_flight", 0),
                "-" if reach is None else f"{reach:.1f} s",
                f"{r.peak_rss_mb:.0f} MB",
            ]
        )
    header = [
        "scenario",
        "contender",
        "wall",
        "limit",
        "ratio",
        "done",
        "requests/asset",
        "API requests/asset",
        "429s",
        "duplicate paid jobs",
        "max in flight",
        "90% of cap after",
        "peak RSS",
    ]
    return table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--cap", type=int, default=20)
    parser.add_argument("--duration", type=float, default=1.0)
    args = parser.parse_args()
    print(render(*measure(args.items, args.cap, args.duration)))


if __name__ == "__main__":
    main()
