"""The runner's money-safety rules, each pinned by a regression test (the review's findings)."""

from __future__ import annotations

from pathlib import Path

import pytest

import pipeline.backend
from pipeline.client import ApiClient
from pipeline.credentials import Credentials
from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.journal import Intent, Journal
from pipeline.lockfile import read_lock
from pipeline.manifest import load_manifests, load_settings
from pipeline.plan import plan_collections
from pipeline.report import Event, Outcome
from pipeline.schedule import Runner, RunOptions, RunPaths
from pipeline.state import STATE_DIR, RepoLock, StatCache
from tests.conftest import WriteFile
from tests.e2e import FAST, copy_examples, generates, invoke

ICONS = """
    defaults: {model: model_bfl-flux-2-dev, width: 256, height: 256}
    items:
      - {id: a, prompt: a sword, seed: 1}
      - {id: b, prompt: a shield, seed: 2}
      - {id: c, prompt: a potion, seed: 3}
      - {id: d, prompt: a coin, seed: 4}
      - {id: e, prompt: a rune, seed: 5}
      - {id: f, prompt: a bow, seed: 6}
"""


def client_for(emu: Emulator) -> ApiClient:
    creds = Credentials(emu.config.api_key, emu.config.api_secret)
    return ApiClient(base_url=emu.base_url, credentials=creds, transport=emu.transport())


def runner_for(root: Path, client: ApiClient, **options: object) -> Runner:
    settings = load_settings(root)
    collections = load_manifests(root, settings)
    lock = read_lock(root / settings.lockfile)
    plan = plan_collections(
        collections,
        lock,
        backend="scenario",
        output_dir=root / "output",
        stat_cache=StatCache(),
        remote_default=settings.remote_collection,
    )
    paths = RunPaths(root / "assets.lock", root / "output", root / STATE_DIR, root)
    opts = RunOptions(first_poll=0.05, **options)  # type: ignore[arg-type]
    return Runner(client, plan, lock, paths, options=opts)


async def test_interrupt_stops_every_submission_still_waiting_for_a_slot(
    repo: Path, write: WriteFile
) -> None:
    write("manifests/icons.yaml", ICONS)
    emu = Emulator(EmulatorConfig(**FAST))
    async with client_for(emu) as client:
        runner = runner_for(repo, client, ceiling=2)
        submitted: list[str] = []

        def on_event(event: Event) -> None:
            if event.kind == "submitted":
                submitted.append(event.key)
                runner.interrupt()

        runner.on_event = on_event
        report = await runner.run()
    assert generates(emu) == len(submitted) == 1
    assert report.count(Outcome.SKIPPED) == 5
    assert report.interrupted


async def test_reconciliation_takes_only_an_exact_unclaimed_unfailed_match(
    repo: Path, write: WriteFile
) -> None:
    write("manifests/icons.yaml", ICONS)
    emu = Emulator(EmulatorConfig(**FAST))
    async with client_for(emu) as client:
        runner = runner_for(repo, client)
        bigger = {"prompt": "a sword", "seed": 1, "width": 512, "height": 512}
        made = await client.generate("model_bfl-flux-2-dev", bigger)
        assert made.job is not None
        plain = Intent(
            "f" * 64,
            "c/a",
            "model_bfl-flux-2-dev",
            {"prompt": "a sword", "seed": 1},
            runner._now_iso(),
        )
        assert await runner._reconcile(plain) is None  # a superset of the inputs is another job
        exact = Intent("e" * 64, "c/b", "model_bfl-flux-2-dev", bigger, runner._now_iso())
        assert await runner._reconcile(exact) == made.job.job_id
        runner._claimed.add(made.job.job_id)
        assert await runner._reconcile(exact) is None  # another item already follows it
        runner._claimed.clear()
        await client.cancel_job(made.job.job_id)
        assert await runner._reconcile(exact) is None  # a canceled job is no result


def test_forgetting_an_intent_spares_a_newer_job_for_the_same_inputs(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    intent = Intent("a" * 64, "c/i", "m", {"prompt": "p"}, "2026-11-22T00:00:00+00:00")
    journal.attach(intent, "job_new")
    journal.forget("a" * 64, "job_old")
    assert journal.load()["a" * 64].job_id == "job_new"
    journal.forget("a" * 64, "job_new")
    assert journal.load() == {}


async def test_an_intent_whose_job_the_api_no_longer_has_is_generated_afresh(
    repo: Path, write: WriteFile
) -> None:
    write("manifests/icons.yaml", ICONS)
    emu = Emulator(EmulatorConfig(**FAST))
    async with client_for(emu) as client:
        first = runner_for(repo, client)
        entry = first.work()[0]
        assert entry.item is not None and entry.fingerprint is not None
        model = await client.get_model(entry.item.model)
        from pipeline.request import build_body

        body, _ = build_body(entry.item, model)
        stale = Intent(entry.fingerprint, entry.key, entry.item.model, body, first._now_iso())
        Journal(repo / STATE_DIR).attach(stale, "job_gone")
        report = await runner_for(repo, client).run()
    assert report.count(Outcome.GENERATED) == 6
    assert generates(emu) == 6
    assert Journal(repo / STATE_DIR).load() == {}


def test_a_disk_error_fails_its_items_and_keeps_the_rest(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = copy_examples(repo)
    emu = Emulator(EmulatorConfig(**FAST))
    monkeypatch.setattr(pipeline.backend, "local_emulator", lambda: emu)
    (game / "output").mkdir()
    (game / "output" / "tiles").write_text("a file where a folder should be")
    result = invoke(game, "run")
    assert result.exit_code == 1
    assert "5 item(s) failed, 16 done and kept" in result.stderr
    assert "cannot write" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(list((game / "output").rglob("*.png"))) == 18  # 17 outputs and the kept cutout


def test_a_second_run_in_the_same_repo_is_refused(repo: Path) -> None:
    game = copy_examples(repo)
    with RepoLock(game / STATE_DIR):
        result = invoke(game, "run")
    assert result.exit_code == 1
    assert "another pipeline run (pid " in result.stderr
    assert "nothing was done" in result.stderr
    assert not (game / "assets.lock").exists()


def test_the_repo_lock_is_free_again_after_its_holder_ends(repo: Path) -> None:
    with RepoLock(repo / STATE_DIR):
        pass
    with RepoLock(repo / STATE_DIR):
        pass
