"""Suite 6, two writers on one repo: real `pipeline run` processes against a served emulator.

The repo lock (`.pipeline/run.lock`, an OS file lock) must make a second `run` or `prune` refuse
at once, with a clear message, while a first run works; must be free again the moment its holder
dies (even by SIGKILL); and so there is never more than one writer of the lockfile: the final lock
is valid and complete and no generation is paid twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.lockfile import read_lock
from pipeline.state import STATE_DIR
from tests.e2e import (
    GENERATIONS,
    copy_examples,
    generates,
    invoke,
    loopback_env,
    run_process,
    served,
)
from tests.reliability.conftest import scale

SLOW_JOBS = {"job_duration": "fixed:0.4", "parallel_cap": 6}
REFUSED = "another pipeline run (pid "


@pytest.fixture
def game(repo: Path) -> Path:
    return copy_examples(repo)


def start_run(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`pipeline run` as a real process, in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "-C", str(root), "run", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lock_is_held(root: Path) -> bool:
    """True when some process holds the repo lock (tried here without blocking, then let go)."""
    path = root / STATE_DIR / "run.lock"
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def wait_until(condition: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    """Poll `condition` with small sleeps until it holds; fail after `deadline` seconds."""
    stop = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > stop:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextlib.contextmanager
def finally_killed(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Never leave a background run behind, whatever the test does."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def assert_complete(root: Path) -> None:
    """The lockfile is valid and records every one of the example's 21 items."""
    lock = read_lock(root / "assets.lock")
    assert len(lock.items) == 21
    assert not list(root.glob(".assets.lock.*"))


def test_a_second_run_refuses_at_once_while_the_first_works(game: Path) -> None:
    """Run B, started while run A holds the lock, exits 1 naming A's pid, before A is done; A
    finishes alone: a complete lock and each of its generations paid once."""
    with served(**SLOW_JOBS) as (emu, url):
        env = loopback_env(url)
        with finally_killed(start_run(game, env)) as first:
            wait_until(lambda: lock_is_held(game), "run A to take the repo lock")
            started = time.monotonic()
            second = run_process(game, "run", env=env)
            assert first.poll() is None, "run A ended before B was refused: slow the jobs down"
            assert second.returncode == 1, second.stderr
            assert f"{REFUSED}{first.pid})" in second.stderr
            assert "nothing was done" in second.stderr
            assert "Traceback" not in second.stderr
            assert time.monotonic() - started < 10  # refused, not queued behind A
            _, stderr = first.communicate(timeout=120)
        assert first.returncode == 0, stderr
        assert generates(emu) == GENERATIONS
        assert emu.stats.duplicate_generates == 0
        assert emu.stats.duplicate_uploads == emu.stats.duplicate_paid == 0
    assert_complete(game)


def test_prune_refuses_and_plan_answers_while_a_run_holds_the_lock(game: Path) -> None:
    """During a run, `prune` exits 1 naming the holder and removes nothing, while `plan` and
    `validate` (which never take the lock) answer at once; after the run, `prune` works."""
    with served(**SLOW_JOBS) as (_emu, url):
        env = loopback_env(url)
        with finally_killed(start_run(game, env)) as first:
            wait_until(lambda: lock_is_held(game), "the run to take the repo lock")
            pruned = invoke(game, "prune", env={**env, "NO_COLOR": "1"})
            assert pruned.exit_code == 1, pruned.stderr
            assert f"{REFUSED}{first.pid})" in pruned.stderr
            assert "pruned" not in pruned.stderr
            assert invoke(game, "validate").exit_code == 0
            planned = invoke(game, "plan", "--json", env=env)
            assert planned.exit_code == 0, planned.stderr
            assert first.poll() is None, "the run ended too soon to prove anything"
            _, stderr = first.communicate(timeout=120)
            assert first.returncode == 0, stderr
    assert invoke(game, "prune", env={"NO_COLOR": "1"}).exit_code == 0
    assert_complete(game)


def test_the_lock_is_free_once_its_holder_is_killed(game: Path) -> None:
    """SIGKILL the run holding the lock: the lock is free at once, and a new run proceeds and
    completes without paying twice for what the killed run had submitted."""
    with served(**SLOW_JOBS) as (emu, url):
        env = loopback_env(url)
        with finally_killed(start_run(game, env)) as first:
            wait_until(lambda: lock_is_held(game), "the run to take the repo lock")
            wait_until(lambda: emu.stats.jobs_created >= 2, "the run to submit jobs")
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        assert not lock_is_held(game)
        rerun = run_process(game, "run", env=env)
        assert rerun.returncode == 0, rerun.stderr
        assert REFUSED not in rerun.stderr
        assert emu.stats.duplicate_generates == 0
        assert emu.stats.duplicate_uploads == emu.stats.duplicate_paid == 0
        assert generates(emu) == GENERATIONS
    assert_complete(game)


@pytest.mark.parametrize("round_", range(scale(1, 4)))
def test_racing_runs_never_make_two_writers(game: Path, round_: int) -> None:
    """Four runs started together: each either does the work, finds nothing left, or is refused
    with the message; the lock ends valid and complete; no generation is paid twice."""
    racers = 4
    with served(job_duration="fixed:0.2", seed=round_) as (emu, url):
        env = loopback_env(url)
        processes = [start_run(game, env) for _ in range(racers)]
        outcomes = []
        for process in processes:
            with finally_killed(process):
                _, stderr = process.communicate(timeout=120)
            outcomes.append((process.returncode, stderr))
        for code, stderr in outcomes:
            assert "Traceback" not in stderr
            assert code == 0 or (code == 1 and REFUSED in stderr), stderr
        assert any(code == 0 for code, _ in outcomes)
        assert emu.stats.duplicate_generates == 0
        assert emu.stats.duplicate_uploads == emu.stats.duplicate_paid == 0
        assert generates(emu) == GENERATIONS
    assert_complete(game)
