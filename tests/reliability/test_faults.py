"""Fault matrix: every emulator fault knob alone, at storm strength, and in combinations.

For each case `pipeline run --json` ends either with everything done, or with a clear per-item
failure (exit 1, the item's reason in the JSON): never a traceback, never exit 2, never a hang past
the configured deadline, never a paid request sent twice (`duplicate_generates == 0`), and never a
half-written or unlocked file. Done items are whole images matching their lock records; failed
items have neither file nor lock entry.

In process (the local backend, `make_local`) for speed, with the scheduler's sleeps recorded and
shortened (`quick_sleep`): the waits it *asks* for are what the Retry-After cases check. Over
loopback, with a real subprocess and real sleeps, for what needs sockets and wall-clock deadlines:
dropped connections, read timeouts, jobs stuck in progress, truncated streams.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import pipeline.cost
from pipeline.emulator import Faults
from pipeline.limits import RetryPolicy
from pipeline.lockfile import read_lock
from pipeline.schedule import Runner
from tests.conftest import MakeLocal
from tests.e2e import copy_examples, invoke, loopback_env, run_process, served
from tests.reliability.conftest import FULL

# The fast slice runs one collection (5 items, one with `seed`); the full mode the whole game.
SELECT = () if FULL else ("tiles",)
ITEMS = 21 if FULL else 5
CAP = RetryPolicy().retry_after_cap
# The errors of an item that spent all its attempts on transient faults.
_GAVE_UP = re.compile(r"HTTP (5\d\d|429)|no answer|truncated|expired|not a readable image")


@dataclass(frozen=True)
class Case:
    """One fault configuration and what `run` must make of it."""

    id: str
    faults: Faults | str
    expect: str  # "done": all done, exit 0; "failed": all fail; "some": exit 1, the rest done
    reason: str = ""  # text every failed item's error must contain
    args: tuple[str, ...] = ()


def _ra(knob: str, rate: float, value: float | str) -> Faults:
    """A fault with a Retry-After the spec syntax cannot spell (commas in HTTP dates)."""
    return Faults({"*": {knob: rate}}, retry_after=value)


CASES = [
    # each knob alone, at a rate the retries absorb
    Case("500", "error_500=0.3", "done"),
    Case("503", "error_503=0.3", "done"),
    Case("503-retry-after", "error_503=0.3,retry_after=0.01", "done"),
    Case("429-storm", "error_429=0.3", "done"),
    Case("429-retry-after", "error_429=0.3,retry_after=0.01", "done"),
    Case("429-retry-after-1e9", "error_429=0.3,retry_after=1e9", "done"),
    Case("429-retry-after-negative", "error_429=0.3,retry_after=-5", "done"),
    Case("429-retry-after-garbage", "error_429=0.3,retry_after=soon", "done"),
    Case("429-retry-after-inf", "error_429=0.3,retry_after=1e400", "done"),
    Case("503-retry-after-nan", "error_503=0.3,retry_after=nan", "done"),
    Case(
        "429-retry-after-past-date", _ra("error_429", 0.3, "Wed, 21 Oct 2015 07:28:00 GMT"), "done"
    ),
    Case(
        "429-retry-after-far-date", _ra("error_429", 0.3, "Fri, 01 Jan 2100 00:00:00 GMT"), "done"
    ),
    Case("429-retry-after-empty", _ra("error_429", 0.3, ""), "done"),
    Case("drop", "drop=0.2", "done"),
    Case("timeout", "timeout=0.2,timeout_delay=0", "done"),
    Case("slow", "slow=0.3,slow_delay=0.05", "done"),
    Case("truncate", "download:truncate=0.3", "done"),
    Case("expire", "assets:expire=0.3,download:expire=0.3", "done"),
    # paid requests whose answer is lost, every time: reconciled against the job list, paid once
    Case("generate-drop-always", "generate:drop=1", "done"),
    Case("generate-timeout-always", "generate:timeout=1,timeout_delay=0", "done"),
    # combinations
    Case(
        "everything-at-once",
        "error_500=0.1,error_503=0.1,error_429=0.1,drop=0.1,timeout=0.1,timeout_delay=0,"
        "download:truncate=0.2,assets:expire=0.1,slow=0.1,slow_delay=0.01",
        "done",
    ),
    Case("errors-on-reads", "jobs:error_503=0.4,assets:error_500=0.4,models:error_429=0.4", "done"),
    # storms that never end: every item fails, alone and clearly
    Case("generate-429-forever", "generate:error_429=1", "failed", "429"),
    Case("generate-500-forever", "generate:error_500=1", "failed", "500"),
    Case("generate-503-forever-1e9", "generate:error_503=1,retry_after=1e9", "failed", "503"),
    Case("model-schema-500-forever", "models:error_500=1", "failed", "500"),
    Case("polling-500-forever", "jobs:error_500=1", "failed", "500"),
    Case("assets-503-forever", "assets:error_503=1", "failed", "503"),
    Case("truncate-always", "download:truncate=1", "failed", "truncated"),
    Case("expire-always", "download:expire=1", "failed", "expired"),
    Case("job-failure-always", "generate:job_failure=1", "failed", "ended failure"),
    Case("stuck-always", "generate:stuck=1", "failed", "still in-progress", ("--job-timeout", "1")),
    # some items hit, the rest done and kept
    Case("job-failure-some", "generate:job_failure=0.4", "some", "ended failure"),
    Case("stuck-some", "generate:stuck=0.4", "some", "still in-progress", ("--job-timeout", "1")),
]


@pytest.fixture
def quick_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait the scheduler asks for, recorded; really waited at most 20 ms.

    Polling, backoff and Retry-After all go through the Runner's injected `sleep`, so this keeps
    storms fast while the list tells what a real run would have waited.
    """
    asked: list[float] = []

    async def sleep(seconds: float) -> None:
        asked.append(seconds)
        await asyncio.sleep(min(max(seconds, 0.0), 0.02))

    original = Runner.__init__

    def init(self: Runner, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("sleep", sleep)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Runner, "__init__", init)
    priced = pipeline.cost.estimate  # the budget's dry runs retry under the same policy

    async def estimate(*args: Any, **kwargs: Any) -> Any:
        return await priced(*args, **{**kwargs, "sleep": sleep})

    monkeypatch.setattr(pipeline.cost, "estimate", estimate)
    return asked


def check_outcome(
    root: Path, doc: dict[str, Any], case: Case, exit_code: int, requests: int = 0
) -> dict[str, int]:
    """The per-item contract of one run: done items whole and locked, failures clear and clean."""
    states = {item["key"]: item for item in doc["items"]}
    assert len(states) == ITEMS
    failed = {key: item for key, item in states.items() if item["state"] == "failed"}
    done = {key: item for key, item in states.items() if item["state"] == "generated"}
    assert len(failed) + len(done) == ITEMS, states
    if case.expect == "done":
        # Retries absorb these rates; over hundreds of calls one call may still lose all its
        # attempts: that item then fails alone, clearly, with the last transient error.
        gave_up = {k: v["error"] for k, v in failed.items() if not _GAVE_UP.search(v["error"])}
        assert not gave_up, gave_up
        # At 40% faults a call loses all 6 attempts about once in 250 calls, and a chained,
        # captioned item makes many: allowed, 10% of the items or one per 100 requests.
        allowed = max(1, ITEMS // 10, requests // 100)
        assert len(failed) <= allowed, {k: v["error"] for k, v in failed.items()}
        assert exit_code == (1 if failed else 0)
    elif case.expect == "failed":
        assert exit_code == 1 and not done, done
    else:
        assert exit_code == 1 and failed and done, (len(failed), len(done))
    for key, item in failed.items():
        assert item["error"], key
        if case.expect != "done":
            assert case.reason in item["error"], (key, item["error"])
    lock = read_lock(root / "assets.lock")
    assert set(lock.items) == set(done)
    for key in failed:
        collection, name = key.split("/")
        assert not list((root / "output" / collection).glob(f"{name}*.png")), key
    for key, entry in lock.items.items():
        for record in entry.outputs:
            path = root / "output" / record.file
            data = path.read_bytes()
            assert hashlib.sha256(data).hexdigest() == record.sha256, key
            assert len(data) == record.size
            with Image.open(path) as image:
                image.load()
                assert image.size == (record.width, record.height)
    assert not [p for p in root.rglob("*") if p.name.endswith((".part", ".tmp"))]
    return {"done": len(done), "failed": len(failed)}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_fault_ends_done_or_as_a_clear_item_failure(
    case: Case, repo: Path, make_local: MakeLocal, quick_sleep: list[float]
) -> None:
    """One fault configuration, in process: done or clear failures, nothing paid twice."""
    root = copy_examples(repo)
    emu = make_local(faults=case.faults, seed=5)
    started = time.monotonic()
    result = invoke(root, "run", "--json", *case.args, *SELECT)
    seconds = time.monotonic() - started
    assert "Traceback" not in result.stderr, result.stderr
    assert result.exit_code in (0, 1), result.stderr
    requests = sum(emu.stats.requests.values())
    figures = check_outcome(root, json.loads(result.stdout), case, result.exit_code, requests)
    assert emu.stats.duplicate_generates == 0
    assert all(0 <= wait <= CAP for wait in quick_sleep), max(quick_sleep)
    print(
        f"\n{case.id}: {figures}, faults {dict(emu.stats.faults)}, "
        f"longest wait asked {max(quick_sleep, default=0):.2f}s, {seconds:.1f}s"
    )


@pytest.mark.parametrize(
    "faults",
    [
        "error_500=0.1,error_503=0.1,drop=0.1,timeout=0.1,timeout_delay=0,download:truncate=0.2",
        "generate:drop=0.3",  # answers lost, so paid requests are maybe paid: reconciled
    ],
    ids=["mixed", "generate-answers-lost"],
)
def test_a_run_under_a_tight_budget_survives_faults_and_charges_each_job_once(
    faults: str, repo: Path, make_local: MakeLocal, quick_sleep: list[float]
) -> None:
    """The budget is exactly the estimate: lost answers (maybe paid) and resends must neither
    double-count a job nor stop the run short, and what it reports spent is what was billed."""
    root = copy_examples(repo)
    priced = json.loads(invoke(root, "plan", "--cost", "--json", *SELECT).stdout)["cost"]["total"]
    emu = make_local(faults=faults, seed=5)
    result = invoke(root, "run", "--json", "--budget", str(priced), *SELECT)
    assert "Traceback" not in result.stderr, result.stderr
    doc = json.loads(result.stdout)
    not_done = {i["key"]: i["error"] for i in doc["items"] if i["state"] != "generated"}
    assert not not_done or all(_GAVE_UP.search(e) for e in not_done.values()), not_done
    assert len(not_done) <= max(1, ITEMS // 10)
    assert emu.stats.duplicate_generates == 0
    assert doc["spent"] == emu.stats.billed <= priced


def test_retry_after_is_obeyed_when_sane_and_capped_when_absurd(
    repo: Path, make_local: MakeLocal, quick_sleep: list[float]
) -> None:
    """Retry-After 0.01 on every 503 is waited exactly; 1e9 is cut to the policy's cap."""
    root = copy_examples(repo)
    make_local(faults="generate:error_503=0.5,retry_after=0.01", seed=5)
    assert invoke(root, "run", "tiles").exit_code == 0
    assert 0.01 in quick_sleep
    quick_sleep.clear()
    (root / "assets.lock").unlink()
    make_local(faults="generate:error_503=0.5,retry_after=1e9", seed=5)
    assert invoke(root, "run", "--force", "tiles").exit_code == 0
    assert CAP in quick_sleep and max(quick_sleep) == CAP


# --- over loopback: real sockets, real clocks ------------------------------------------------


def _settings(root: Path, **values: float) -> None:
    (root / "pipeline.yaml").write_text("".join(f"{k}: {v}\n" for k, v in values.items()))


def _json(result: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


LOOPBACK = [
    Case("read-timeout", "generate:timeout=0.4,jobs:timeout=0.1,timeout_delay=3", "done"),
    Case("stuck-always", "generate:stuck=1", "failed", "still in-progress", ("--job-timeout", "1")),
]
if FULL:  # the fast slice keeps the two that prove deadlines; full mode adds the rest
    LOOPBACK += [
        Case("drop", "drop=0.15", "done"),
        Case("generate-drop", "generate:drop=0.5", "done"),
        Case("truncate", "download:truncate=0.3,download:drop=0.1", "done"),
        Case("everything", "error_500=0.1,error_429=0.1,drop=0.1,download:truncate=0.2", "done"),
    ]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", LOOPBACK, ids=[c.id for c in LOOPBACK])
def test_socket_level_faults_over_loopback(case: Case, repo: Path) -> None:
    """A real process against a real socket: hangups mid-answer, answers that come too late
    (request_timeout 0.5 s against a 3 s delay), jobs that never end (--job-timeout 1)."""
    root = copy_examples(repo)
    _settings(root, request_timeout=0.5)
    with served(faults=case.faults, seed=9) as (emu, url):
        started = time.monotonic()
        result = run_process(root, "run", "--json", *case.args, *SELECT, env=loopback_env(url))
        seconds = time.monotonic() - started
        assert "Traceback" not in result.stderr, result.stderr
        requests = sum(emu.stats.requests.values())
        figures = check_outcome(root, _json(result), case, result.returncode, requests)
        assert emu.stats.duplicate_generates == 0
    # the deadline holds: the stuck job's item gives up about --job-timeout after submitting
    assert seconds < 30, seconds
    print(f"\nloopback {case.id}: {figures}, faults {dict(emu.stats.faults)}, {seconds:.1f}s")


@pytest.mark.timeout(60)
def test_a_timed_out_job_is_reattached_on_rerun_not_paid_again(repo: Path) -> None:
    """Items whose jobs are stuck fail at --job-timeout; the rerun follows the same jobs (their
    ids are in the journal) instead of paying for new ones."""
    root = copy_examples(repo)
    with served(faults="generate:stuck=1", seed=9) as (emu, url):
        env = loopback_env(url)
        first = run_process(root, "run", "--json", "--job-timeout", "1", "tiles", env=env)
        assert first.returncode == 1, first.stderr
        paid = emu.stats.jobs_created
        assert paid == 5
        again = run_process(root, "run", "--json", "--job-timeout", "1", "tiles", env=env)
        assert again.returncode == 1, again.stderr
        assert all("still in-progress" in i["error"] for i in _json(again)["items"])
        assert emu.stats.jobs_created == paid
        assert emu.stats.duplicate_generates == 0


# --- the full workflow: uploads, a training, then-chains, captions, a remote collection -------

# The two collections that use it: ui-icons (a training on six uploaded sprites, a sketch, two
# paid steps per output, a kept cutout) and characters (captions, reference sheets, a remote
# collection); 16 items. Each answer lost is found again: an upload among the account's uploads,
# a training by its model's status, a step job and a caption job in the job list.
WORKFLOW = ("ui-icons", "characters")
WORKFLOW_ITEMS = 16
WORKFLOW_CASES = [
    Case("answers-lost-everywhere", "generate:drop=0.5,assets:drop=0.5,models:drop=0.5", "done"),
    Case(
        "everything-at-once",
        "error_500=0.1,error_503=0.1,error_429=0.1,drop=0.1,timeout=0.1,timeout_delay=0,"
        "download:truncate=0.2,assets:expire=0.1",
        "done",
    ),
    Case("training-fails", "models:job_failure=1", "some", "training 'ember-pixel' failed"),
]
if FULL:
    WORKFLOW_CASES += [
        Case("generate-drop-always", "generate:drop=1", "done"),
        Case("uploads-timeout", "assets:timeout=0.4,timeout_delay=0", "done"),
        Case("models-timeout", "models:timeout=0.5,timeout_delay=0", "done"),
        Case("steps-fail-some", "generate:job_failure=0.2", "some", "ended failure"),
    ]


@pytest.mark.parametrize("case", WORKFLOW_CASES, ids=[c.id for c in WORKFLOW_CASES])
def test_the_workflow_stages_survive_faults_and_pay_each_request_once(
    case: Case, repo: Path, quick_sleep: list[float]
) -> None:
    """Over loopback (the scenario backend: the account keeps uploads, models and jobs, and the
    journal is on): done or clear per-item failures, and no generation, step, upload, training
    or caption sent twice; a rerun without faults then finishes, paying only for what is left."""
    root = copy_examples(repo)
    with served(faults=case.faults, seed=5) as (emu, url):
        env = loopback_env(url)
        result = invoke(root, "run", "--json", *WORKFLOW, env=env)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.exit_code in (0, 1), result.stderr
        doc = json.loads(result.stdout)
        states = {item["key"]: item for item in doc["items"] if "/" in item["key"]}
        items = {k: v for k, v in states.items() if not k.startswith("collection/")}
        assert len(items) == WORKFLOW_ITEMS
        failed = {k: v["error"] for k, v in items.items() if v["state"] == "failed"}
        if case.expect == "done":
            # A request that spent all its attempts fails its item, alone, with the transient
            # error; a shared one (an upload, the training) fails every item that needs it, all
            # with that one reason.
            assert all(_GAVE_UP.search(e) for e in failed.values()), failed
            assert len(set(failed.values())) <= 2, failed
        else:
            assert failed and all(case.reason in e for e in failed.values()), failed
        stats = emu.stats
        assert stats.duplicate_generates == stats.duplicate_uploads == stats.duplicate_paid == 0
        lock = read_lock(root / "assets.lock")
        for key, entry in lock.items.items():
            for record in entry.files():
                data = (root / "output" / record.file).read_bytes()
                assert hashlib.sha256(data).hexdigest() == record.sha256, key

        emu.set_faults("")  # the storm is over
        again = invoke(root, "run", "--json", *WORKFLOW, env=env)
        assert again.exit_code == 0, again.stderr
        assert stats.duplicate_generates == stats.duplicate_uploads == stats.duplicate_paid == 0
        assert not (root / ".pipeline" / "jobs").exists() or not list(
            (root / ".pipeline" / "jobs").iterdir()
        )
    print(f"\nworkflow {case.id}: {len(failed)} failed, faults {dict(emu.stats.faults)}")
