"""`pipeline run` as a real process against `pipeline emulator`-style serving on loopback.

The CLI talks to the served emulator as if it were the Scenario cloud (SCENARIO_BASE_URL and
credentials set), so these also cover the `scenario` backend's restore-by-asset-id path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e import (
    FILES,
    GENERATIONS,
    copy_examples,
    generates,
    loopback_env,
    run_process,
    served,
    summary,
)


@pytest.fixture
def game(repo: Path) -> Path:
    return copy_examples(repo)


def partial_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".part", ".tmp"))]


def test_run_over_loopback_then_restore_a_file_by_asset_id(game: Path) -> None:
    with served() as (emu, url):
        env = loopback_env(url)
        first = run_process(game, "run", env=env)
        assert first.returncode == 0, first.stderr
        assert "backend: scenario" in first.stderr
        assert generates(emu) == GENERATIONS
        lava = game / "output" / "tiles" / "lava.png"
        before = lava.read_bytes()
        lava.unlink()
        emu.stats.reset()
        again = run_process(game, "run", "--json", env=env)
        assert again.returncode == 0, again.stderr
        assert summary(again)["counts"]["restored"] == 1
        assert generates(emu) == 0  # restored from the asset: nothing paid
        assert lava.read_bytes() == before


def _wait_for_jobs(emu_jobs: object, count: int, deadline: float = 20.0) -> None:
    stop = time.monotonic() + deadline
    while time.monotonic() < stop and emu_jobs() < count:  # type: ignore[operator]
        time.sleep(0.01)


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_a_killed_run_resumes_without_paying_twice(game: Path, kill: signal.Signals) -> None:
    with served(job_duration="fixed:0.3", parallel_cap=4) as (emu, url):
        env = loopback_env(url)
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "-C", str(game), "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for_jobs(lambda: emu.stats.jobs_created, 6)
        os.kill(process.pid, kill)
        _, stderr = process.communicate(timeout=60)
        if kill == signal.SIGINT:
            assert process.returncode == 130, stderr
            assert "stopping: nothing new is submitted" in stderr
        else:
            assert process.returncode == -signal.SIGKILL
        assert 0 < emu.stats.jobs_created < GENERATIONS
        rerun = run_process(game, "run", env=env)
        assert rerun.returncode == 0, rerun.stderr
        assert emu.stats.duplicate_generates == 0
        assert emu.stats.duplicate_uploads == emu.stats.duplicate_paid == 0
        assert generates(emu) == GENERATIONS
        assert len(list((game / "output").rglob("*.png"))) == FILES
        assert partial_files(game) == []
        assert list((game / ".pipeline" / "jobs").glob("*.json")) == []
        final = run_process(game, "plan", "--check", env=env)
        assert final.returncode == 0, final.stderr
