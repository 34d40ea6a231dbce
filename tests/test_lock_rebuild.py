"""`pipeline lock rebuild`: a lost or broken lock remade from output/, with no API call."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import pipeline.backend
from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.index import write_indexes
from pipeline.lockfile import read_lock, render_lock
from pipeline.manifest import load_manifests, load_settings
from tests.conftest import MakeLocal, WriteFile
from tests.e2e import FAST, copy_examples, invoke, lock_bytes
from tests.helpers import settle


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples, generated once by a real run against the emulator."""
    root = copy_examples(tmp_path_factory.mktemp("generated"))
    with pytest.MonkeyPatch.context() as patch:
        emu = Emulator(EmulatorConfig(**FAST))
        patch.setattr(pipeline.backend, "local_emulator", lambda: emu)
        assert invoke(root, "run", "--backend", "local").exit_code == 0
    return root


@pytest.fixture
def game(generated: Path, tmp_path: Path) -> Path:
    """A copy of the generated examples, for one test to spoil."""
    return Path(shutil.copytree(generated, tmp_path / "game"))


def test_a_lost_lock_is_rebuilt_byte_identical_with_no_api_call(
    repo: Path, make_local: MakeLocal
) -> None:
    copy_examples(repo)
    emu = make_local()
    assert invoke(repo, "run").exit_code == 0
    lost = lock_bytes(repo)
    (repo / "assets.lock").unlink()
    emu.stats.reset()

    result = invoke(repo, "lock", "rebuild")
    assert result.exit_code == 0, result.stderr
    assert lock_bytes(repo) == lost
    assert result.stderr.splitlines() == [
        "rebuilt 21 items from output/, kept 0 from the old lock, 0 not recoverable",
        "wrote assets.lock (21 added)",
        "next: `pipeline plan` shows what `pipeline run` would still generate or restore",
    ]
    assert invoke(repo, "plan", "--check").exit_code == 0
    assert sum(emu.stats.requests.values()) == 0


def test_rebuilding_a_sound_lock_changes_nothing(game: Path) -> None:
    before = (game / "assets.lock").stat()
    result = invoke(game, "lock", "rebuild")
    assert result.exit_code == 0
    assert "assets.lock already says exactly this: nothing to write" in result.stderr
    assert (game / "assets.lock").stat().st_mtime_ns == before.st_mtime_ns


def test_the_index_carries_the_whole_lock_entry(game: Path) -> None:
    lock = read_lock(game / "assets.lock")
    index = json.loads((game / "output" / "tiles" / "index.json").read_text())
    lava, dirt = index["items"][2], index["items"][0]
    locked = lock.items["tiles/lava"]
    assert lava["id"] == "lava" and lava["seed"] == 666  # what engine scripts read is kept
    assert lava["prompt"] == locked.request["prompt"]
    assert lava["fingerprint"] == locked.fingerprint
    assert lava["request"] == locked.request
    assert "seed_derived" not in lava and dirt["seed_derived"] is True
    record = locked.outputs[0]
    assert lava["files"] == [
        {
            "file": "lava.png",
            "width": record.width,
            "height": record.height,
            "sha256": record.sha256,
            "size": record.size,
        }
    ]


def test_asset_ids_and_derived_seeds_survive_the_rebuild(repo: Path, write: WriteFile) -> None:
    write(
        "manifests/icons.yaml",
        """
        collection: ui-icons
        defaults: {model: m, width: 32, height: 32}
        items:
          - {id: sword, prompt: a sword}
          - {id: coin, prompt: a coin, seed: 5, outputs: 2, params: {guidance: 3.5}}
        """,
    )
    lock = settle(repo, backend="scenario")  # as a real run: every output has an asset id
    write_indexes(repo / "output", load_manifests(repo, load_settings(repo)), lock)
    lost = lock_bytes(repo)
    assert b'"asset_id"' in lost and b'"seed_derived": true' in lost
    (repo / "assets.lock").unlink()
    assert invoke(repo, "lock", "rebuild").exit_code == 0
    assert lock_bytes(repo) == lost


def test_a_gone_file_with_an_asset_id_is_rebuilt_for_a_free_restore(
    repo: Path, write: WriteFile
) -> None:
    """Left out, the item would plan as `new` and be paid again; rebuilt, it is `missing`."""
    write("manifests/icons.yaml", "defaults: {model: m}\nitems:\n  - {id: sword, prompt: s}\n")
    lock = settle(repo, backend="scenario")
    write_indexes(repo / "output", load_manifests(repo, load_settings(repo)), lock)
    lost = lock_bytes(repo)
    (repo / "assets.lock").unlink()
    (repo / "output" / "icons" / "sword.png").unlink()
    result = invoke(repo, "lock", "rebuild")
    assert (
        "output/icons/sword.png is gone: rebuilt from index.json; `pipeline run` restores it "
        "by asset id" in result.stderr
    )
    assert lock_bytes(repo) == lost
    planned = json.loads(invoke(repo, "plan", "--json", "--backend", "scenario").stdout)
    assert [item["state"] for item in planned["items"]] == ["missing"]


def test_a_corrupt_lock_is_backed_up_then_rebuilt(game: Path) -> None:
    sound = lock_bytes(game)
    for number in (1, 2):
        (game / "assets.lock").write_bytes(b'{"items": {"tiles/lava": ')
        result = invoke(game, "lock", "rebuild")
        assert result.exit_code == 0, result.stderr
        assert lock_bytes(game) == sound
        backup = game / ".pipeline" / f"assets.lock.broken.{number}"
        assert backup.read_bytes() == b'{"items": {"tiles/lava": '  # an earlier copy is kept
        assert f"copied it to .pipeline/assets.lock.broken.{number} before replacing it" in (
            result.stderr
        )
    assert "assets.lock is not valid JSON" in result.stderr


def test_a_lock_with_conflict_markers_is_backed_up_then_rebuilt(game: Path) -> None:
    sound = lock_bytes(game)
    (game / "assets.lock").write_bytes(b"<<<<<<< ours\n" + sound + b"=======\n>>>>>>> theirs\n")
    result = invoke(game, "lock", "rebuild")
    assert result.exit_code == 0, result.stderr
    assert "assets.lock has unresolved git merge conflict markers" in result.stderr
    assert lock_bytes(game) == sound
    assert (game / ".pipeline" / "assets.lock.broken.1").exists()


def test_a_lock_from_a_newer_pipeline_is_refused_not_rebuilt(game: Path) -> None:
    newer = b'{"version": 99, "items": {}}'
    (game / "assets.lock").write_bytes(newer)
    result = invoke(game, "lock", "rebuild")
    assert result.exit_code == 2
    assert "written by a newer pipeline" in result.stderr
    assert lock_bytes(game) == newer


def test_altered_and_missing_outputs_are_reported_and_not_rebuilt(game: Path) -> None:
    lava = game / "output" / "tiles" / "lava.png"
    data = bytearray(lava.read_bytes())
    data[-20] ^= 0xFF  # same size, other content
    lava.write_bytes(bytes(data))
    (game / "output" / "characters" / "innkeeper.png").unlink()
    (game / "assets.lock").unlink()

    result = invoke(game, "lock", "rebuild")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[:3] == [
        "output/characters/index.json: items[0] (characters/innkeeper): "
        "output/characters/innkeeper.png is gone, and has no asset id to restore it: not "
        "rebuilt",
        "output/tiles/index.json: items[2] (tiles/lava): output/tiles/lava.png was altered "
        "(content differs from index.json): not rebuilt",
        "rebuilt 19 items from output/, kept 0 from the old lock, 2 not recoverable",
    ]
    rebuilt = read_lock(game / "assets.lock")
    assert len(rebuilt.items) == 19
    assert "tiles/lava" not in rebuilt.items and "characters/innkeeper" not in rebuilt.items


def test_entries_it_cannot_recover_are_kept_from_a_readable_lock(game: Path) -> None:
    sound = read_lock(game / "assets.lock")
    sound.uploads["1" * 64] = "asset_upload"
    sound.trainings["2" * 64] = "model_trained"
    (game / "assets.lock").write_bytes(render_lock(sound))
    (game / "output" / "tiles" / "lava.png").unlink()

    result = invoke(game, "lock", "rebuild")
    assert result.exit_code == 0
    assert "rebuilt 20 items from output/, kept 1 from the old lock, 1 not recoverable" in (
        result.stderr
    )
    assert read_lock(game / "assets.lock") == sound  # lava's record, uploads, trainings kept


def test_a_readable_lock_keeps_its_entries_where_output_contradicts_them(game: Path) -> None:
    """After a `git pull` the lock can be newer than the untracked files beside it: its record
    stays (`run` restores its files by asset id), and only missing items are added."""
    lock = read_lock(game / "assets.lock")
    lock.items["tiles/lava"] = lock.items["tiles/dirt"]
    del lock.items["tiles/grass"]
    (game / "assets.lock").write_bytes(render_lock(lock))
    result = invoke(game, "lock", "rebuild")
    assert (
        "tiles/lava: output/ holds other files than assets.lock records: the lock's entry is "
        "kept" in result.stderr
    )
    assert "wrote assets.lock (1 added)" in result.stderr
    rebuilt = read_lock(game / "assets.lock")
    assert rebuilt.items["tiles/lava"] == lock.items["tiles/dirt"]
    assert "tiles/grass" in rebuilt.items


def test_dry_run_writes_nothing(game: Path) -> None:
    (game / "assets.lock").write_bytes(b"garbage")
    state = sorted(p.name for p in (game / ".pipeline").iterdir())
    result = invoke(game, "lock", "rebuild", "--dry-run")
    assert result.exit_code == 0
    assert lock_bytes(game) == b"garbage"
    assert sorted(p.name for p in (game / ".pipeline").iterdir()) == state
    assert "it would be copied to .pipeline/ before it is replaced" in result.stderr
    assert "would write assets.lock (21 added); dry run: nothing written" in (result.stderr)


def test_malformed_indexes_are_located(game: Path) -> None:
    tiles = game / "output" / "tiles" / "index.json"
    doc = json.loads(tiles.read_text())
    del doc["items"][0]["fingerprint"]
    doc["items"][1]["files"][0]["sha256"] = "xyz"
    doc["items"][2]["files"][0]["file"] = "../lava.png"
    doc["items"][3] = doc["items"][4]
    tiles.write_text(json.dumps(doc))
    (game / "output" / "characters" / "index.json").write_text("{")
    (game / "assets.lock").unlink()

    lines = invoke(game, "lock", "rebuild").stderr.splitlines()
    assert lines[0].startswith(
        "output/characters/index.json: is not valid JSON (Expecting property name"
    )
    assert lines[1:5] == [
        "output/tiles/index.json: items[0] (tiles/dirt): has no fingerprint (an index written "
        "before `pipeline lock rebuild` existed holds too little to rebuild from): not rebuilt",
        "output/tiles/index.json: items[1] (tiles/grass): files[0].sha256: String should match "
        "pattern '^[0-9a-f]{64}$': not rebuilt",
        "output/tiles/index.json: items[2] (tiles/lava): files[0].file: expected a file name, "
        "got '../lava.png': not rebuilt",
        "output/tiles/index.json: items[4] (tiles/water): tiles/water is listed twice: not rebuilt",
    ]
    assert "rebuilt 10 items from output/, kept 0 from the old lock, 5 not recoverable" in lines


def test_the_output_and_lockfile_settings_are_honoured(repo: Path, write: WriteFile) -> None:
    write("pipeline.yaml", "output: art/generated\nlockfile: locks/game.lock\n")
    write(
        "manifests/icons.yaml",
        """
        collection: ui-icons
        items:
          - {id: sword, model: m, prompt: a sword, seed: 1}
        """,
    )
    lock = settle(repo)
    write_indexes(repo / "art" / "generated", load_manifests(repo, load_settings(repo)), lock)
    lost = (repo / "locks" / "game.lock").read_bytes()
    (repo / "locks" / "game.lock").write_text("not json")
    result = invoke(repo, "lock", "rebuild")
    assert result.exit_code == 0, result.stderr
    assert (repo / "locks" / "game.lock").read_bytes() == lost
    assert "rebuilt 1 item from art/generated/" in result.stderr
    assert "wrote locks/game.lock" in result.stderr
    assert (repo / ".pipeline" / "game.lock.broken.1").read_text() == "not json"
