"""`pipeline run` end to end: the real CLI against the emulator, in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import MakeLocal
from tests.e2e import FILES, GENERATIONS, copy_examples, generates, invoke, lock_bytes, summary


@pytest.fixture
def game(repo: Path) -> Path:
    return copy_examples(repo)


def test_first_run_generates_every_example_and_a_rerun_does_nothing(
    game: Path, make_local: MakeLocal
) -> None:
    emu = make_local()
    result = invoke(game, "run")
    assert result.exit_code == 0, result.stderr
    assert generates(emu) == GENERATIONS
    assert result.stderr.splitlines()[-1].startswith("done in ")
    assert "21 generated, 0 restored, 0 unchanged, 0 failed" in result.stderr
    with Image.open(game / "output" / "ui-icons" / "gold-coin_2.png") as coin:
        assert coin.size == (1024, 1024)  # 512, cut out, upscaled 2x
    with Image.open(game / "output" / "characters" / "mage-angry.png") as portrait:
        assert portrait.size == (768, 1024)
    index = json.loads((game / "output" / "tiles" / "index.json").read_text())
    assert [item["id"] for item in index["items"]] == [
        "dirt",
        "grass",
        "lava",
        "stone-path",
        "water",
    ]
    assert index["items"][2]["seed"] == 666
    assert index["items"][2]["files"][0]["file"] == "lava.png"

    before = lock_bytes(game)
    emu.stats.reset()
    again = invoke(game, "run")
    assert again.exit_code == 0
    assert sum(emu.stats.requests.values()) == 0  # not a single API call
    assert lock_bytes(game) == before
    assert "0 generated, 0 restored, 21 unchanged, 0 failed" in again.stderr
    assert invoke(game, "plan", "--check").exit_code == 0


def test_editing_one_prompt_regenerates_exactly_that_item(
    game: Path, make_local: MakeLocal
) -> None:
    emu = make_local()
    invoke(game, "run")
    lava = game / "output" / "tiles" / "lava.png"
    others = {p: p.read_bytes() for p in (game / "output").rglob("*.png") if p != lava}
    before = lava.read_bytes()
    manifest = game / "manifests" / "tiles.yaml"
    manifest.write_text(manifest.read_text().replace("glowing cracks", "bright cracks"))
    emu.stats.reset()
    result = invoke(game, "run", "--json")
    assert result.exit_code == 0, result.stderr
    assert generates(emu) == 1
    assert summary(result)["counts"]["generated"] == 1
    assert lava.read_bytes() != before
    assert all(path.read_bytes() == data for path, data in others.items())


def test_a_deleted_output_is_restored_with_the_same_bytes(
    game: Path, make_local: MakeLocal
) -> None:
    make_local()
    invoke(game, "run")
    lava = game / "output" / "tiles" / "lava.png"
    before, lock = lava.read_bytes(), lock_bytes(game)
    lava.unlink()
    result = invoke(game, "run")
    assert result.exit_code == 0
    assert "1 restored" in result.stderr
    assert lava.read_bytes() == before  # the local backend's art is deterministic
    assert lock_bytes(game) == lock


def test_the_parallel_cap_is_found_and_kept_full(game: Path, make_local: MakeLocal) -> None:
    emu = make_local(parallel_cap=3, job_duration="fixed:0.1")
    result = invoke(game, "run", "--concurrency", "50")
    assert result.exit_code == 0, result.stderr
    assert emu.stats.max_in_flight == 3
    assert emu.stats.statuses[429] <= 5
    assert emu.stats.duplicate_generates == 0


def test_faults_on_every_endpoint_cost_no_duplicate_and_lose_nothing(
    game: Path, make_local: MakeLocal
) -> None:
    faults = "error_500=0.07,error_503=0.07,drop=0.06,timeout=0.05,timeout_delay=0.01"
    emu = make_local(faults=faults)
    result = invoke(game, "run")
    assert result.exit_code == 0, result.stderr
    assert len(list((game / "output").rglob("*.png"))) == FILES
    assert sum(emu.stats.faults.values()) > 5
    assert emu.stats.duplicate_generates == 0
    assert emu.stats.duplicate_uploads == 0 and emu.stats.duplicate_paid == 0


def test_a_failed_job_and_a_rejected_request_fail_alone(game: Path, make_local: MakeLocal) -> None:
    tiles = game / "manifests" / "tiles.yaml"
    text = tiles.read_text()
    tiles.write_text(text.replace("    seed: 666\n", "    seed: 666\n    width: 520\n"))
    make_local()
    assert invoke(game, "run", "characters").exit_code == 0  # done before the trouble
    make_local(faults="generate:job_failure=1")
    result = invoke(game, "run", "--json", "tiles")
    assert result.exit_code == 1
    doc = summary(result)
    states = {item["key"]: (item["state"], item["error"]) for item in doc["items"]}
    state, error = states["tiles/lava"]
    assert state == "failed"
    assert error.startswith(
        "manifests/tiles.yaml:17:12: items[1].width: 520 is not a multiple of 16"
    )
    state, error = states["tiles/grass"]
    assert state == "failed"
    assert "ended failure" in error and "hint:" in error
    assert doc["counts"]["failed"] == 5
    assert "5 item(s) failed, 0 done and kept" in result.stderr
    assert len(list((game / "output" / "characters").glob("*.png"))) == 7
    assert not (game / "output" / "tiles").exists()


def test_truncated_downloads_and_expired_urls_are_fetched_again(
    game: Path, make_local: MakeLocal
) -> None:
    emu = make_local(faults="download:truncate=0.1,download:expire=0.05,assets:expire=0.05")
    result = invoke(game, "run")
    assert result.exit_code == 0, result.stderr
    assert emu.stats.faults["truncate"] > 0 and emu.stats.faults["expire"] > 0
    assert generates(emu) == GENERATIONS  # downloads retried, nothing generated twice
    for png in (game / "output").rglob("*.png"):
        with Image.open(png) as image:
            image.load()
    assert [p for p in game.rglob("*.part")] == []


def test_prune_lists_then_removes_orphans_only(game: Path, make_local: MakeLocal) -> None:
    make_local()
    invoke(game, "run")
    tiles = game / "manifests" / "tiles.yaml"
    tiles.write_text(tiles.read_text().replace("[grass, dirt, stone-path, water]", "[grass, dirt]"))
    dry = invoke(game, "prune", "--dry-run")
    assert dry.exit_code == 0
    assert dry.stderr.splitlines() == [
        "would remove output/tiles/stone-path.png",
        "would remove output/tiles/water.png",
        "would prune 2 orphaned items",
    ]
    assert (game / "output" / "tiles" / "water.png").exists()
    result = invoke(game, "prune")
    assert result.exit_code == 0
    assert not (game / "output" / "tiles" / "water.png").exists()
    assert (game / "output" / "tiles" / "grass.png").exists()
    lock = json.loads(lock_bytes(game))
    assert "tiles/water" not in lock["items"] and "tiles/grass" in lock["items"]
    assert invoke(game, "plan", "--check").exit_code == 0
