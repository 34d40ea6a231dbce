"""Crash chaos: `pipeline run` SIGKILLed at random and at aimed moments, rerun, again and again.

One served emulator (jobs of random length, a parallel cap, some faults) for the whole test, so its
counters see every run: across all the kills and reruns, no request may be paid twice. Each round
is a fresh copy of the example game whose prompts are tagged with the round, killed a few times
(see chaos.py for the aimed moments: journal writes, download temp files, output renames, lockfile
temp files and renames), then run to the end uninterrupted. Checked:
  - after every kill: the lock parses and every file it records is there, whole, as recorded;
  - after the final run (every run under a budget of exactly the game's price): exit 0, every
    item done, zero duplicate generate calls, uploads, trainings or captions, the emulator's
    bill that price (each job paid once), every output decodes and matches its lock record, no
    temp file anywhere, `.pipeline/jobs` empty, and `plan --check` says nothing is pending.
The game has the whole workflow: a style training (its six images uploaded once), a sketch and
reference sheets uploaded, `then:` chains of two paid steps per icon output, captions.
Seeded: CHAOS_SEED=<n> replays the same choices of triggers and delays (timing still varies).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.emulator import Emulator
from pipeline.lockfile import read_lock
from tests.e2e import FILES, ITEMS, copy_examples, loopback_env, run_process, served, summary
from tests.reliability.chaos import (
    TRIGGERS,
    Tally,
    check_final,
    check_lock_matches_disk,
    run_and_kill,
    tag_prompts,
    temp_files,
)
from tests.reliability.conftest import FULL, scale

SEED = int(os.environ.get("CHAOS_SEED", "20260101"))
KILLS = scale(3, 50)
KILLS_PER_ROUND = scale(3, 5)
FAULTS = "error_500=0.03,drop=0.02,generate:drop=0.08,download:truncate=0.05,jobs:error_503=0.05"
# Under a budget of exactly what the game costs (tests/test_cost.py): each rerun re-prices what
# is pending, leaving out the jobs it re-attaches to, and must never refuse or stop short.
PRICE = 415.0
RUN_ARGS = ["run", "--concurrency", "6", "--budget", f"{PRICE:g}"]


@pytest.mark.timeout(900 if FULL else 120)
def test_sigkill_at_any_moment_never_pays_twice_nor_loses_a_result(tmp_path: Path) -> None:
    """Kill after kill, nothing paid twice, nothing lost, nothing half-written left behind."""
    rng = random.Random(SEED)
    tally = Tally()
    context = f"CHAOS_SEED={SEED}"
    with served(job_duration="uniform:0.05,0.6", parallel_cap=4, faults=FAULTS, seed=SEED) as (
        emu,
        url,
    ):
        env = loopback_env(url)
        round_no = 0
        order: list[str] = []
        while tally.kills < KILLS:
            round_no += 1
            assert round_no <= 3 * max(1, KILLS // KILLS_PER_ROUND), f"{context}: no progress"
            root = copy_examples(_fresh(tmp_path, round_no))
            tag_prompts(root, f"chaos round {round_no}")
            killed_here = 0
            while killed_here < KILLS_PER_ROUND and tally.kills < KILLS:
                if not order:  # every trigger once per cycle, in a seeded order
                    order = rng.sample(TRIGGERS, len(TRIGGERS))
                trigger = order.pop()
                delay = rng.uniform(0.3, 2.5) if trigger == "random" else rng.uniform(1.0, 4.0)
                attempt = run_and_kill(root, env, RUN_ARGS, trigger, delay)
                tally.attempts.append(attempt)
                where = f"{context} round {round_no} attempt {len(tally.attempts)} ({attempt})"
                check_lock_matches_disk(root)
                _no_duplicates(emu, where)
                if attempt.outcome == "finished":
                    break  # the round's work is done: more kills would hit an idle run
                killed_here += 1
            final = run_process(root, *RUN_ARGS, "--json", env=env)
            where = f"{context} round {round_no}, final run"
            assert final.returncode == 0, f"{where}\n{final.stderr[-3000:]}"
            assert summary(final)["counts"]["failed"] == 0, where
            check_final(root, items=ITEMS, files=FILES)
            _no_duplicates(emu, where)
            assert emu.stats.billed == PRICE * round_no, where
            planned = run_process(root, "plan", "--check", env=env)
            assert planned.returncode == 0, f"{where}\n{planned.stderr}"
        print(f"\n{context}: {round_no} round(s), {emu.stats.jobs_created} jobs created")
        print(tally.summary())
        print(f"faults injected: {dict(emu.stats.faults)}")
    assert tally.kills >= KILLS


def _no_duplicates(emu: Emulator, where: str) -> None:
    stats = emu.stats
    assert stats.duplicate_generates == 0, where
    assert stats.duplicate_uploads == 0, f"{where}: {stats.uploads}"
    assert stats.duplicate_paid == 0, f"{where}: {stats.paid}"  # trainings and captions


def _fresh(tmp_path: Path, round_no: int) -> Path:
    root = tmp_path / f"round-{round_no}"
    (root / "manifests").mkdir(parents=True)
    return root


def test_temp_files_of_a_run_killed_after_its_work_are_swept_by_the_next_run(
    tmp_path: Path,
) -> None:
    """A run killed while writing index.json (its last step) leaves a temp file; the rerun,
    which has nothing to generate, must still clean it up.

    The kill is simulated by planting the exact temp names `files.write_atomic` uses, in the
    three places a finished run writes last: output/<collection>/, .pipeline/ and the root.
    """
    root = copy_examples(_fresh(tmp_path, 0))
    with served() as (_emu, url):
        env = loopback_env(url)
        assert run_process(root, "run", env=env).returncode == 0
        planted = [
            root / "output" / "tiles" / ".index.json.k1ll3d.tmp",
            root / ".pipeline" / ".stat-cache.json.k1ll3d.tmp",
            root / ".assets.lock.k1ll3d.tmp",
        ]
        for path in planted:
            path.write_bytes(b"half a write")
        again = run_process(root, "run", env=env)
        assert again.returncode == 0, again.stderr
    assert temp_files(root) == []


# `pipeline run` with journal cleanup replaced by an instant death: the process dies right after
# the first lockfile write that records an item, before the intents that write made safe are
# forgotten (uploads and trainings, locked earlier, are forgotten as usual).
_DIE_BEFORE_FORGET = (
    "import os, sys\n"
    "import pipeline.journal\n"
    "forget = pipeline.journal.Journal.forget\n"
    "def dying(self, key, job_id=None):\n"
    "    if key.startswith(('upload-', 'train-')):\n"
    "        return forget(self, key, job_id)\n"
    "    os._exit(9)\n"
    "pipeline.journal.Journal.forget = dying\n"
    "from pipeline.cli import main\n"
    "sys.argv[0] = 'pipeline'\n"
    "main()\n"
)


def test_a_kill_between_lock_write_and_journal_cleanup_leaves_no_stale_intent(
    tmp_path: Path,
) -> None:
    """Killed right after the lock records items, before their intents are dropped: the rerun
    must not pay for them again (it does not) and must leave `.pipeline/jobs` empty."""
    root = copy_examples(_fresh(tmp_path, 0))
    with served(job_duration="fixed:0.05") as (emu, url):
        env = loopback_env(url)
        died = subprocess.run(
            [sys.executable, "-c", _DIE_BEFORE_FORGET, "-C", str(root), "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert died.returncode == 9, died.stderr
        locked = len(read_lock(root / "assets.lock").items)
        assert locked > 0
        again = run_process(root, "run", env=env)
        assert again.returncode == 0, again.stderr
        _no_duplicates(emu, "the rerun")  # money safety holds; only the state leaks
    assert list((root / ".pipeline" / "jobs").iterdir()) == []
