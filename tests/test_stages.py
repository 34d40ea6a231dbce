"""The full asset workflow end to end: uploads, style training, `then:` chains, captions and
remote collections, each a cached stage. The real CLI against a served emulator (the `scenario`
backend over loopback, whose account keeps what it made between runs), or the local backend.

The example game uses all of it: ui-icons trains `ember-pixel` on refs/style/ and runs every
icon through background removal and a 2x upscale (healing-potion from a sketch, keeping its
cutout); characters are captioned and kept in a remote collection, the innkeeper drawn from
reference sheets.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.emulator import Emulator
from pipeline.emulator.catalogue import BACKGROUND_REMOVER, UPSCALER
from pipeline.lockfile import read_lock
from tests.conftest import MakeLocal
from tests.e2e import copy_examples, generates, invoke, lock_bytes, loopback_env, served, summary
from tests.helpers import png_bytes

# The example: 21 items. 9 icons (10 outputs: gold-coin has 2), each output 3 jobs (generation,
# background removal, upscale); 5 tiles; 7 portraits, each captioned.
GENERATIONS = 9 + 20 + 5 + 7
UPLOADS = 6 + 1 + 2  # the style set, the potion sketch, the innkeeper's two sheets
ICON_OUTPUTS = 10


@pytest.fixture
def game(repo: Path) -> Path:
    return copy_examples(repo)


@pytest.fixture(scope="module")
def _generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Emulator, str, Path]]:
    """One served emulator for the module, and the game generated against it once."""
    template = copy_examples(tmp_path_factory.mktemp("generated"))
    with served() as (emu, url):
        first = invoke(template, "run", "--json", env=loopback_env(url))
        assert first.exit_code == 0, first.stderr
        yield emu, url, template


@pytest.fixture
def account(game: Path, _generated: tuple[Emulator, str, Path]) -> tuple[Emulator, dict[str, str]]:
    """The game as generated on the account (a copy of it: files, lock, state), counters reset.

    The copies share the account, as a team's clones do: each test changes its own."""
    emu, url, template = _generated
    shutil.rmtree(game)
    shutil.copytree(template, game)
    emu.stats.reset()
    return emu, loopback_env(url)


def paid(emu: Emulator, kind: str) -> int:
    return sum(count for key, count in emu.stats.paid.items() if key.startswith(f"{kind}:"))


def jobs_by_model(emu: Emulator, since: float) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in emu.store.jobs.values():
        if job.created >= since and job.job_type == "custom":
            counts[job.model_id] = counts.get(job.model_id, 0) + 1
    return counts


def plan_doc(game: Path, env: dict[str, str]) -> dict[str, Any]:
    result = invoke(game, "plan", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    return summary(result)


def changed(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in doc["items"] if item["state"] != "unchanged"}


def test_a_first_run_makes_every_stage_and_a_second_pays_for_nothing(game: Path) -> None:
    with served() as (emu, url):
        env = loopback_env(url)
        first = invoke(game, "run", "--json", env=env)
        assert first.exit_code == 0, first.stderr
        assert generates(emu) == GENERATIONS
        assert emu.stats.duplicate_generates == 0
        assert sum(emu.stats.uploads.values()) == UPLOADS and emu.stats.duplicate_uploads == 0
        assert paid(emu, "training") == 1
        assert paid(emu, "caption") == 7 and emu.stats.duplicate_paid == 0
        lock = read_lock(game / "assets.lock")
        (trained,) = lock.trainings.values()
        assert trained.startswith("model_")
        assert len(lock.uploads) == UPLOADS
        collection = lock.collections["characters"]
        assert len(emu.store.collections[collection].asset_ids) == 7
        before = lock_bytes(game)

        emu.stats.reset()
        again = invoke(game, "run", "--json", env=env)
        assert again.exit_code == 0, again.stderr
        assert summary(again)["counts"]["unchanged"] == 21
        assert generates(emu) == 0 and not emu.stats.paid and not emu.stats.uploads
        assert lock_bytes(game) == before
        check = invoke(game, "plan", "--check", env=env)
        assert check.exit_code == 0, check.stderr


def test_the_outputs_are_what_the_chain_made(game: Path, make_local: MakeLocal) -> None:
    make_local()
    result = invoke(game, "run")
    assert result.exit_code == 0, result.stderr
    icons = game / "output" / "ui-icons"
    with Image.open(icons / "iron-sword.png") as sword:
        assert sword.size == (1024, 1024) and sword.mode == "RGBA"  # cut out, upscaled 2x
    with Image.open(icons / "healing-potion.cutout.png") as cutout:
        assert cutout.size == (512, 512)  # the kept intermediate result
    index = json.loads((icons / "index.json").read_text())
    potion = next(item for item in index["items"] if item["id"] == "healing-potion")
    assert [stage["step"] for stage in potion["stages"]] == ["generation", "cutout"]
    assert potion["stages"][1]["files"][0]["file"] == "healing-potion.cutout.png"
    portraits = json.loads((game / "output" / "characters" / "index.json").read_text())
    for item in portraits["items"]:
        (file,) = item["files"]
        assert file["alt"]  # the caption, as alt text
    knight = next(item for item in portraits["items"] if item["id"] == "knight-angry")
    assert "knight" in knight["files"][0]["alt"]


def test_replacing_one_reference_image_regenerates_only_its_items(
    game: Path, account: tuple[Emulator, dict[str, str]]
) -> None:
    emu, env = account
    (game / "refs" / "potion-sketch.png").write_bytes(png_bytes(512, 512, (10, 200, 90)))
    doc = plan_doc(game, env)
    assert {key: item["reasons"] for key, item in changed(doc).items()} == {
        "ui-icons/healing-potion": ["image"]
    }
    result = invoke(game, "run", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    assert summary(result)["counts"]["generated"] == 1
    assert generates(emu) == 3  # its generation, then its two steps
    assert sum(emu.stats.uploads.values()) == 1  # only the new sketch


def test_moving_a_reference_image_changes_nothing(
    game: Path, account: tuple[Emulator, dict[str, str]]
) -> None:
    _emu, env = account
    shutil.move(game / "refs" / "potion-sketch.png", game / "refs" / "sketch-of-potion.png")
    manifest = game / "manifests" / "ui-icons.yaml"
    text = manifest.read_text().replace("refs/potion-sketch.png", "refs/sketch-of-potion.png")
    manifest.write_text(text)
    assert not changed(plan_doc(game, env))


def test_changing_the_upscale_factor_reruns_only_the_upscale(
    game: Path, account: tuple[Emulator, dict[str, str]]
) -> None:
    emu, env = account
    manifest = game / "manifests" / "ui-icons.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("params: {scale: 2}          #", "params: {scale: 4}  #", 1))
    doc = plan_doc(game, env)
    rerun = changed(doc)
    assert len(rerun) == 8  # every icon but healing-potion, which has its own chain
    for item in rerun.values():
        assert item["reasons"] == ["then[1].params.scale"]
        assert item["rerun_from"] == "then[1] (upscale-v3)"
    since = emu.clock()
    result = invoke(game, "run", env=env)
    assert result.exit_code == 0, result.stderr
    assert jobs_by_model(emu, since) == {UPSCALER: ICON_OUTPUTS - 1}
    assert not emu.stats.uploads and not emu.stats.paid
    with Image.open(game / "output" / "ui-icons" / "iron-sword.png") as sword:
        assert sword.size == (2048, 2048)


def test_changing_the_training_images_retrains_and_regenerates_its_users(
    game: Path, account: tuple[Emulator, dict[str, str]]
) -> None:
    emu, env = account
    tiles_before = (game / "output" / "tiles" / "lava.png").read_bytes()
    (game / "refs" / "style" / "ember-03-potion.png").write_bytes(png_bytes(128, 128, (1, 2, 3)))
    doc = plan_doc(game, env)
    assert [(t["name"], t["state"]) for t in doc["trainings"]] == [("ember-pixel", "new")]
    assert set(changed(doc)) == {
        f"ui-icons/{name}"
        for name in (
            "iron-sword", "wooden-shield", "iron-shield", "golden-shield", "healing-potion",
            "fire-rune", "frost-rune", "storm-rune", "gold-coin",
        )
    }  # fmt: skip
    since = emu.clock()
    result = invoke(game, "run", env=env)
    assert result.exit_code == 0, result.stderr
    assert paid(emu, "training") == 1
    assert sum(emu.stats.uploads.values()) == 1  # the one new image; the others are cached
    assert jobs_by_model(emu, since) == {
        "model_bfl-flux-2-dev": 9,
        BACKGROUND_REMOVER: ICON_OUTPUTS,
        UPSCALER: ICON_OUTPUTS,
    }
    assert (game / "output" / "tiles" / "lava.png").read_bytes() == tiles_before
    assert len(read_lock(game / "assets.lock").trainings) == 2  # the old model stays cached


def test_a_failed_training_fails_only_its_items_with_the_apis_reason(
    game: Path, make_local: MakeLocal
) -> None:
    make_local(faults="models:job_failure=1")
    result = invoke(game, "run", "--json", env={"NO_COLOR": "1"})
    assert result.exit_code == 1
    counts = summary(result)["counts"]
    assert counts["generated"] == 12 and counts["failed"] == 9  # tiles and portraits made
    assert "training 'ember-pixel' failed: Training diverged" in result.stderr
    lock = read_lock(game / "assets.lock")
    assert not lock.trainings and len(lock.items) == 12

    make_local()
    again = invoke(game, "run", "--json")
    assert again.exit_code == 0, again.stderr
    assert summary(again)["counts"]["generated"] == 9


def test_turning_captions_on_captions_without_regenerating(
    game: Path, account: tuple[Emulator, dict[str, str]]
) -> None:
    emu, env = account
    manifest = game / "manifests" / "tiles.yaml"
    manifest.write_text(
        manifest.read_text().replace("  width: 256\n", "  width: 256\n  caption: true\n")
    )
    doc = plan_doc(game, env)
    assert {item["reasons"][0] for item in changed(doc).values()} == {"caption"}
    result = invoke(game, "run", env=env)
    assert result.exit_code == 0, result.stderr
    assert generates(emu) == 0 and paid(emu, "caption") == 5
    index = json.loads((game / "output" / "tiles" / "index.json").read_text())
    assert all(item["files"][0]["alt"] for item in index["items"])


def test_the_remote_collection_follows_a_regenerated_item(
    game: Path, account: tuple[Emulator, dict[str, str]]
) -> None:
    emu, env = account
    lock = read_lock(game / "assets.lock")
    collection = emu.store.collections[lock.collections["characters"]]
    old = lock.items["characters/mage-angry"].outputs[0].asset_id
    assert old in collection.asset_ids
    manifest = game / "manifests" / "characters.yaml"
    manifest.write_text(manifest.read_text().replace("guidance: 4", "guidance: 5"))
    result = invoke(game, "run", env=env)
    assert result.exit_code == 0, result.stderr
    new = read_lock(game / "assets.lock").items["characters/mage-angry"].outputs[0].asset_id
    assert new in collection.asset_ids and old not in collection.asset_ids
    assert len(collection.asset_ids) == 6 + 1  # the six regenerated, and the innkeeper


def test_a_lost_lock_is_rebuilt_with_its_trainings_and_uploads_and_pays_nothing(
    game: Path, account: tuple[Emulator, dict[str, str]]
) -> None:
    """index.json carries the caches its items use: a training is never paid for again because
    a lock was lost."""
    emu, env = account
    before = lock_bytes(game)
    (game / "assets.lock").unlink()
    rebuilt = invoke(game, "lock", "rebuild")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert lock_bytes(game) == before
    again = invoke(game, "run", env=env)
    assert again.exit_code == 0, again.stderr
    assert generates(emu) == 0 and not emu.stats.paid and not emu.stats.uploads
