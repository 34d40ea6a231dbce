"""The workflow's stages in the runner, in process: a training resumed after a crash, uploads
shared, a step that cannot be one, the plan's resume points, a remote collection past 49."""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
from pathlib import Path

from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.emulator.catalogue import IMAGEN
from pipeline.journal import Journal
from pipeline.lockfile import read_lock
from pipeline.manifest import load_manifests, load_settings
from pipeline.plan import State, plan_collections
from pipeline.report import Event, Outcome
from pipeline.state import STATE_DIR, StatCache
from tests.conftest import WriteFile
from tests.e2e import FAST, generates, invoke, loopback_env, served
from tests.helpers import png_bytes, settle
from tests.test_schedule import client_for, runner_for

TRAINED = """
    train:
      - {name: pixel, images: 'refs/*.png', params: {maxTrainSteps: 100}}
    defaults: {model: model_bfl-flux-2-dev, width: 256, height: 256, lora: pixel}
    items:
      - {id: a, prompt: a sword, seed: 1, image: refs/s0.png}
      - {id: b, prompt: a shield, seed: 2, image: refs/s0.png}
      - {id: plain, prompt: a coin, seed: 3, lora: null}
"""


def refs(root: Path, count: int = 3) -> None:
    (root / "refs").mkdir(exist_ok=True)
    for n in range(count):
        (root / "refs" / f"s{n}.png").write_bytes(png_bytes(64, 64, (n * 40, 90, 200)))


def trainings_paid(emu: Emulator) -> int:
    return sum(n for key, n in emu.stats.paid.items() if key.startswith("training:"))


async def test_a_training_a_crashed_run_started_is_followed_not_paid_again(
    repo: Path, write: WriteFile
) -> None:
    """Killed right after the train call: the journal holds the model; the next run sees it
    `training` (the API's word on whether the call went through) and follows it."""
    refs(repo)
    write("manifests/icons.yaml", TRAINED)
    emu = Emulator(EmulatorConfig(**{**FAST, "training_duration": "fixed:0.3"}))
    async with client_for(emu) as client:
        runner = runner_for(repo, client, first_training_poll=0.05)
        task = asyncio.ensure_future(runner.run())

        def on_event(event: Event) -> None:
            if event.kind == "submitted" and event.key == "train/pixel":
                task.cancel()  # the process dies with the training started

        runner.on_event = on_event
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert trainings_paid(emu) == 1
        intents = Journal(repo / STATE_DIR).load().values()
        (intent,) = [i for i in intents if i.key == "train/pixel"]
        assert intent.job_id is not None and intent.job_id.startswith("model_")

        again = runner_for(repo, client, first_training_poll=0.05)
        report = await again.run()
    assert report.count(Outcome.GENERATED) == 3, [r.error for r in report.results]
    assert trainings_paid(emu) == 1 and emu.stats.duplicate_paid == 0
    assert sum(emu.stats.uploads.values()) == 3 and emu.stats.duplicate_uploads == 0
    lock = read_lock(repo / "assets.lock")
    assert list(lock.trainings.values()) == [intent.job_id]
    assert not list((repo / STATE_DIR / "jobs").iterdir())


async def test_items_that_do_not_use_a_training_do_not_wait_for_it(
    repo: Path, write: WriteFile
) -> None:
    refs(repo)
    write("manifests/icons.yaml", TRAINED)
    emu = Emulator(EmulatorConfig(**{**FAST, "training_duration": "fixed:0.5"}))
    order: list[str] = []
    async with client_for(emu) as client:
        runner = runner_for(repo, client, first_training_poll=0.05)
        runner.on_event = lambda event: order.append(f"{event.kind} {event.key}")
        report = await runner.run()
    assert report.count(Outcome.GENERATED) == 3
    assert order.index("generated icons/plain") < order.index("trained train/pixel")
    assert order.index("trained train/pixel") < order.index("generated icons/a")
    assert sum(emu.stats.uploads.values()) == 3  # the sketch both items share: once


def test_a_step_whose_model_takes_no_image_is_located_before_anything_is_paid(
    repo: Path, write: WriteFile, make_local: object
) -> None:
    write(
        "manifests/icons.yaml",
        f"""
        defaults: {{model: model_bfl-flux-2-dev, width: 256, height: 256}}
        items:
          - id: a
            prompt: a sword
            then:
              - {{model: {IMAGEN}}}
        """,
    )
    emu = make_local()  # type: ignore[operator]
    result = invoke(repo, "run", "--json")
    assert result.exit_code == 1
    assert generates(emu) == 0  # found before the generation is paid (a review's finding)
    (item,) = json.loads(result.stdout)["items"]
    assert item["error"] == (
        f"manifests/icons.yaml:6:17: items[0].then[0].model: model {IMAGEN} takes no image, so "
        "it cannot be a `then:` step"
    )


CHAINED = """
    defaults:
      model: model_bfl-flux-2-dev
      width: 256
      height: 256
      caption: {caption}
      then:
        - {{model: photoroom-background-remover, keep: {keep}}}
        - {{model: model_upscale-v3, params: {{scale: {scale}}}}}
    items:
      - {{id: a, prompt: a sword, seed: 1}}
"""


def plan_of(root: Path, backend: str = "scenario") -> dict[str, object]:
    settings = load_settings(root)
    plan = plan_collections(
        load_manifests(root, settings),
        read_lock(root / settings.lockfile),
        backend=backend,
        output_dir=root / "output",
        stat_cache=StatCache(),
    )
    (entry,) = plan.entries
    return {"state": entry.state, "reasons": entry.reasons, "resume": entry.resume}


def test_the_plan_resumes_a_chain_from_the_last_stage_the_lock_holds(
    repo: Path, write: WriteFile
) -> None:
    def manifest(scale: int = 2, keep: str = "false", caption: str = "false") -> None:
        write("manifests/icons.yaml", CHAINED.format(scale=scale, keep=keep, caption=caption))

    manifest()
    settle(repo, backend="scenario")
    assert plan_of(repo)["state"] is State.UNCHANGED
    manifest(scale=4)  # the last step changed: the two stages before it are reused
    assert plan_of(repo) == {
        "state": State.CHANGED,
        "reasons": ("then[1].params.scale",),
        "resume": 2,
    }
    manifest(keep="true")  # keep turned on: the stage's result is fetched, nothing generated
    planned = plan_of(repo)
    assert planned["state"] is State.MISSING and "not in output/ yet (keep: true)" in str(
        planned["reasons"]
    )
    manifest(caption="true")  # captions turned on: nothing regenerated either
    assert plan_of(repo) == {"state": State.CHANGED, "reasons": ("caption",), "resume": 3}


def test_on_the_local_backend_a_changed_step_reruns_its_chain(repo: Path, write: WriteFile) -> None:
    """The local emulator keeps no assets: nothing to resume from, so the chain starts over."""
    write("manifests/icons.yaml", CHAINED.format(scale=2, keep="false", caption="false"))
    settle(repo, backend="local")
    write("manifests/icons.yaml", CHAINED.format(scale=4, keep="false", caption="false"))
    assert plan_of(repo, backend="local")["resume"] == 0


def test_a_remote_collection_is_filled_49_assets_a_request(repo: Path, write: WriteFile) -> None:
    items = "".join(f"      - {{id: i{n}, prompt: thing {n}, seed: {n}}}\n" for n in range(60))
    write(
        "manifests/icons.yaml",
        "    remote_collection: true\n"
        "    defaults: {model: model_bfl-flux-2-dev, width: 256, height: 256}\n"
        "    items:\n" + items,
    )
    with served(job_duration="fixed:0.01") as (emu, url):
        result = invoke(repo, "run", env=loopback_env(url))
        assert result.exit_code == 0, result.stderr
        assert generates(emu) == 60
        assert emu.stats.requests["PUT /v1/collections/{collectionId}/assets"] == 2
        remote = read_lock(repo / "assets.lock").collections["icons"]
        assert len(emu.store.collections[remote].asset_ids) == 60


# --- the review's findings, each pinned ---------------------------------------------------------


def test_settle_forgets_only_what_the_lock_provably_holds(tmp_path: Path) -> None:
    """A lock holding an *older* model (or upload) under the same key does not cover a new
    request's intent: forgetting it would pay for the training again after a crash."""
    from pipeline.journal import Intent, covered
    from pipeline.lockfile import LockEntry, Lockfile

    lock = Lockfile(
        items={"icons/sword": LockEntry(fingerprint="a" * 64, request={})},
        uploads={"b" * 64: "asset_old"},
        trainings={"c" * 64: "model_old"},
    )

    def intent(key: str, item: str = "icons/sword", job: str | None = None) -> Intent:
        return Intent(key, item, "m", {}, "2026-01-01T00:00:00+00:00", job)

    assert covered(intent("train-" + "c" * 64, job="model_old"), lock)
    assert not covered(intent("train-" + "c" * 64, job="model_new"), lock)
    assert covered(intent("upload-" + "b" * 64, job="asset_old"), lock)
    assert not covered(intent("upload-" + "b" * 64, job="asset_new"), lock)
    assert covered(intent("a" * 64), lock)
    assert covered(intent("a" * 64 + ".1"), lock)
    # the same generation, in flight for another item: not this lock entry's
    assert not covered(intent("a" * 64, item="icons/sword-cutout"), lock)


SHARED = """
    defaults: {model: model_bfl-flux-2-dev, width: 256, height: 256}
    items:
      - {id: sword, prompt: a sword, seed: 1}
"""
CUTOUT = "      - {id: sword-cutout, prompt: a sword, seed: 1, then: [{model: model_upscale-v3}]}\n"


async def test_a_generation_two_items_share_is_paid_once(repo: Path, write: WriteFile) -> None:
    """In one run (a stage's journal key is shared) and across runs (a locked stage of another
    item is reused): the same request is never paid for twice."""
    write("manifests/icons.yaml", SHARED + CUTOUT)
    emu = Emulator(EmulatorConfig(**FAST))
    async with client_for(emu) as client:
        report = await runner_for(repo, client).run()
    assert report.count(Outcome.GENERATED) == 2
    assert generates(emu) == 2 and emu.stats.duplicate_generates == 0  # sword, one upscale
    assert report.spent == emu.stats.billed

    again = repo / "again"
    (again / "manifests").mkdir(parents=True)
    (again / "manifests" / "icons.yaml").write_text(textwrap.dedent(SHARED).lstrip())
    emu = Emulator(EmulatorConfig(**FAST))
    async with client_for(emu) as client:
        await runner_for(again, client).run()
        manifest = again / "manifests" / "icons.yaml"
        manifest.write_text(manifest.read_text() + "  " + CUTOUT.strip() + "\n")
        runner = runner_for(again, client)
        (entry,) = runner.plan.pending
        assert entry.reasons == ("the same as icons/sword: its results are reused",)
        report = await runner.run()
    assert report.count(Outcome.GENERATED) == 1
    assert [job.model_id for job in emu.store.jobs.values()] == [
        "model_bfl-flux-2-dev",
        "model_upscale-v3",
    ]


def test_a_step_no_longer_kept_loses_its_file_and_nothing_breaks(
    repo: Path, write: WriteFile, make_local: object
) -> None:
    write("manifests/icons.yaml", CHAINED.format(scale=2, keep="true", caption="false"))
    make_local()  # type: ignore[operator]
    assert invoke(repo, "run").exit_code == 0
    cutout = repo / "output" / "icons" / "a.photoroom-background-remover.png"
    assert cutout.exists()
    write("manifests/icons.yaml", CHAINED.format(scale=2, keep="false", caption="false"))
    cutout.unlink()
    planned = plan_of(repo, backend="local")
    assert planned["state"] is State.CHANGED
    assert planned["reasons"] == ("then[0] result no longer kept",)
    assert invoke(repo, "run").exit_code == 0
    assert invoke(repo, "plan", "--check").exit_code == 0
    assert not cutout.exists()


async def test_after_a_first_ctrl_c_no_caption_is_paid(repo: Path, write: WriteFile) -> None:
    write(
        "manifests/icons.yaml",
        """
        defaults: {model: model_bfl-flux-2-dev, width: 256, height: 256, caption: true}
        items:
          - {id: a, prompt: a sword, seed: 1}
        """,
    )
    emu = Emulator(EmulatorConfig(**FAST))
    async with client_for(emu) as client:
        runner = runner_for(repo, client)
        runner.on_event = lambda event: event.kind == "submitted" and runner.interrupt()
        report = await runner.run()
    assert generates(emu) == 1 and not emu.stats.paid
    assert report.count(Outcome.SKIPPED) == 1  # its files are not locked without the caption


# --- the second review's findings ---------------------------------------------------------------

KNIGHT = """
    remote_collection: true
    defaults: {model: model_bfl-flux-2-dev, width: 256, height: 256, caption: true}
    items:
      - {id: knight, prompt: knight, seed: 1}
"""
KNIGHT_COPY = "      - {id: knight-copy, prompt: knight, seed: 1}\n"


def test_a_result_reused_from_another_item_brings_its_captions_and_stays_in_the_collection(
    repo: Path, write: WriteFile
) -> None:
    """knight-copy reuses knight's asset (nothing generated, nothing captioned again); when
    knight is then regenerated, the shared asset stays in the remote collection for the copy."""
    write("manifests/chars.yaml", KNIGHT)
    with served(job_duration="fixed:0.01") as (emu, url):
        env = loopback_env(url)
        assert invoke(repo, "run", env=env).exit_code == 0
        write("manifests/chars.yaml", KNIGHT + KNIGHT_COPY)
        emu.stats.reset()
        result = invoke(repo, "run", "--json", env=env)
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["counts"]["restored"] == 1
        assert generates(emu) == 0 and not emu.stats.paid
        lock = read_lock(repo / "assets.lock")
        copy = lock.items["chars/knight-copy"].outputs[0]
        assert copy.caption == lock.items["chars/knight"].outputs[0].caption is not None

        write(
            "manifests/chars.yaml",
            (KNIGHT + KNIGHT_COPY).replace(
                "prompt: knight, seed: 1}\n      - {id: knight-copy",
                "prompt: a knight, seed: 1}\n      - {id: knight-copy",
            ),
        )
        assert invoke(repo, "run", env=env).exit_code == 0
        remote = emu.store.collections[read_lock(repo / "assets.lock").collections["chars"]]
        assert copy.asset_id in remote.asset_ids and len(remote.asset_ids) == 2


def test_a_changed_item_reusing_another_items_stage_gets_that_stages_kept_file(
    repo: Path, write: WriteFile
) -> None:
    chain = (
        "then: [{model: photoroom-background-remover, keep: true, name: cut}, "
        "{model: model_upscale-v3}]"
    )
    text = (
        "    defaults: {model: model_bfl-flux-2-dev, width: 256, height: 256, " + chain + "}\n"
        "    items:\n      - {id: x, prompt: red potion, seed: 1}\n"
        "      - {id: y, prompt: blue potion, seed: 1}\n"
    )
    write("manifests/icons.yaml", text)
    with served(job_duration="fixed:0.01") as (emu, url):
        env = loopback_env(url)
        assert invoke(repo, "run", env=env).exit_code == 0
        write("manifests/icons.yaml", text.replace("red potion", "blue potion"))
        emu.stats.reset()
        assert invoke(repo, "run", env=env).exit_code == 0
        assert generates(emu) == 0
    out = repo / "output" / "icons"
    assert (out / "x.cut.png").read_bytes() == (out / "y.cut.png").read_bytes()
    assert (out / "x.png").read_bytes() == (out / "y.png").read_bytes()


def test_uploads_a_killed_run_finished_are_kept_even_when_no_item_needs_them(
    tmp_path: Path,
) -> None:
    """The chaos suite's find: a training's images uploaded, the training then resumed from its
    model by the next run, which never needed the images: their intents stayed. Now their
    asset ids join the lock's cache and the intents go."""
    from pipeline.journal import Intent, adopt_uploads
    from pipeline.lockfile import Lockfile

    journal = Journal(tmp_path)
    journal.write(
        Intent("upload-" + "d" * 64, "refs/a.png", "", {}, "2026-01-01T00:00:00", "asset_d")
    )
    journal.write(Intent("upload-" + "e" * 64, "refs/b.png", "", {}, "2026-01-01T00:00:00"))
    lock = Lockfile()
    assert adopt_uploads(journal, lock)
    assert lock.uploads == {"d" * 64: "asset_d"}  # the one whose answer came back
    journal.settle(lock)
    assert list(journal.load()) == ["upload-" + "e" * 64]  # left for the run that needs it
