"""End-to-end helpers: the example game in a temp repo, emulators in process and served."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.emulator.server import serve

EXAMPLES = Path(__file__).parent.parent / "manifests"
REFS = EXAMPLES.parent / "refs"  # the example's input files: style set, sketch, reference sheets
FAST = {"job_duration": "fixed:0.05", "training_duration": "fixed:0.05", "seed": 11}
# The example game: 21 items; a first run pays 41 generate jobs (21 generations, then background
# removal and upscale for each of the 10 icon outputs), 1 training and 7 captions, and writes 23
# images (22 outputs, gold-coin has two, and healing-potion's kept cutout).
ITEMS, GENERATIONS, FILES = 21, 41, 23


def copy_examples(root: Path) -> Path:
    (root / "manifests").mkdir(exist_ok=True)
    for manifest in EXAMPLES.glob("*.yaml"):
        shutil.copy(manifest, root / "manifests" / manifest.name)
    shutil.copytree(REFS, root / "refs", dirs_exist_ok=True)
    return root


def invoke(root: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """The real CLI, in process."""
    return CliRunner().invoke(cli, ["-C", str(root), *args], env=env, catch_exceptions=False)


def lock_bytes(root: Path) -> bytes:
    return (root / "assets.lock").read_bytes()


def generates(emu: Emulator) -> int:
    return sum(emu.stats.generates.values())


@contextlib.contextmanager
def served(**config: Any) -> Iterator[tuple[Emulator, str]]:
    """An emulator on a free loopback port, in a thread; yields it and its base URL."""
    emu = Emulator(EmulatorConfig(**{**FAST, **config}))
    loop = asyncio.new_event_loop()
    ready: list[str] = []
    started = threading.Event()

    def on_ready(url: str) -> None:
        ready.append(url)
        started.set()

    task: list[asyncio.Task[None]] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        task.append(loop.create_task(serve(emu, "127.0.0.1", 0, on_ready=on_ready)))
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task[0])

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the emulator did not start")
    try:
        yield emu, ready[0]
    finally:
        loop.call_soon_threadsafe(task[0].cancel)
        thread.join(10)
        loop.close()


def loopback_env(base_url: str) -> dict[str, str]:
    """Environment for a CLI subprocess that talks to a served emulator as the real API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    env.update(
        SCENARIO_BASE_URL=base_url,
        SCENARIO_API_KEY="local",
        SCENARIO_API_SECRET="local",
        NO_COLOR="1",
    )
    return env


def run_process(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "-C", str(root), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def summary(result: Result | subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc
