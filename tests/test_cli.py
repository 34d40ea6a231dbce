"""The command line contract: exit codes, where output goes, what it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from tests.conftest import WriteFile
from tests.e2e import copy_examples
from tests.helpers import settle

EXAMPLES = Path(__file__).parent.parent / "manifests"


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["-C", str(root), *args], env=env, catch_exceptions=False)


@pytest.fixture
def game(repo: Path) -> Path:
    """A copy of the example game's manifests and input files."""
    return copy_examples(repo)


def test_validate_accepts_the_examples(game: Path) -> None:
    result = run(game, "validate")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == "ok: 3 manifests, 21 items after expansion\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("items: [\n", "manifests/bad.yaml:2:1"),
        ("items:\n  - id: a\n    promt: x\n    model: m\n", "manifests/bad.yaml:3:5: items[0]"),
        ("items:\n  - {id: a, prompt: x, model: m, seed: big}\n", "items[0].seed"),
        (
            "items:\n  - {id: a, prompt: x, model: m}\n  - {id: a, prompt: y, model: m}\n",
            "duplicate id 'a'",
        ),
        ("items:\n  - {id: ../a, prompt: x, model: m}\n", "items[0].id"),
        ("items:\n  - {id: a, prompt: '{x} sword', model: m}\n", "{x}"),
    ],
    ids=["bad-yaml", "unknown-key", "wrong-type", "duplicate-id", "unsafe-id", "placeholder"],
)
def test_broken_manifests_exit_2_with_a_located_error(
    repo: Path, write: WriteFile, text: str, expected: str
) -> None:
    (repo / "manifests" / "bad.yaml").write_text(text)
    for command in ("validate", "plan"):
        result = run(repo, command)
        assert result.exit_code == 2, result.stderr
        assert expected in result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


def test_plan_on_a_fresh_clone_lists_everything_as_new(game: Path) -> None:
    result = run(game, "plan")
    assert result.exit_code == 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "backend: local (no Scenario credentials in the environment: placeholder art from the "
        "built-in emulator)"
    )
    assert lines[1] == "plan: 21 items: 21 new, 0 changed, 0 missing, 0 unchanged"
    assert lines[2].split() == [
        "new", "train", "ember-pixel", "(6", "images,", "flux.2-dev-lora;", "used", "by", "9",
        "items)",
    ]  # fmt: skip
    assert lines[3].split() == ["new", "characters/knight-neutral"]
    assert lines[-2] == "  remote collection characters: create it, add the outputs of 7 items"
    assert lines[-1] == "next: `pipeline run` would generate or restore 21 items, after 1 training"


def test_plan_check_exits_1_while_anything_is_pending(game: Path) -> None:
    assert run(game, "plan", "--check").exit_code == 1
    settle(game)
    result = run(game, "plan", "--check")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[-1] == "nothing to do: every output in output/ is up to date"


def test_plan_json_is_one_document_on_stdout(game: Path) -> None:
    settle(game)
    (game / "output" / "tiles" / "lava.png").unlink()
    result = run(game, "plan", "--json", "tiles")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["backend"] == "local"
    assert doc["counts"] == {"new": 0, "changed": 0, "missing": 1, "unchanged": 4, "orphaned": 0}
    lava = next(item for item in doc["items"] if item["key"] == "tiles/lava")
    assert lava == {
        "key": "tiles/lava",
        "collection": "tiles",
        "id": "lava",
        "state": "missing",
        "reasons": ["output/tiles/lava.png is gone"],
        "fingerprint": lava["fingerprint"],
        "files": ["output/tiles/lava.png"],
        "seed": 666,
    }


def test_plan_names_changed_inputs_and_orphans(game: Path) -> None:
    settle(game)
    tiles = game / "manifests" / "tiles.yaml"
    text = tiles.read_text().replace("glowing cracks", "bright cracks")
    tiles.write_text(text.replace("[grass, dirt, stone-path, water]", "[grass, dirt, stone-path]"))
    result = run(game, "plan")
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert lines[1] == "plan: 20 items: 0 new, 1 changed, 0 missing, 19 unchanged; 1 orphaned"
    assert lines[2].split() == ["changed", "tiles/lava", "prompt"]
    assert lines[3].split() == ["orphaned", "tiles/water", "no", "longer", "in", "the", "manifests"]


def test_credentials_switch_auto_to_the_scenario_backend(game: Path) -> None:
    env = {"SCENARIO_API_KEY": "KEY-SENTINEL", "SCENARIO_API_SECRET": "SECRET-SENTINEL"}
    result = run(game, "plan", env=env)
    assert result.stderr.splitlines()[0] == (
        "backend: scenario (Scenario credentials found in the environment)"
    )
    assert "SENTINEL" not in result.stderr


def test_scenario_backend_without_credentials_is_invalid_for_what_calls_the_api(
    game: Path,
) -> None:
    """`plan` is pure and plans for the scenario backend without credentials (a fork's pull
    request in CI has none); `run` and `plan --cost` need them."""
    assert run(game, "plan", "--backend", "scenario").exit_code == 0
    for args in (("run", "--backend", "scenario"), ("plan", "--backend", "scenario", "--cost")):
        result = run(game, *args)
        assert result.exit_code == 2
        assert "SCENARIO_API_KEY" in result.stderr


def test_unknown_select_exits_2(game: Path) -> None:
    result = run(game, "plan", "nope/*")
    assert result.exit_code == 2
    assert "'nope/*' matches no collection or item" in result.stderr


def test_unreadable_lock_exits_2(game: Path) -> None:
    (game / "assets.lock").write_text("{oops")
    result = run(game, "plan")
    assert result.exit_code == 2
    assert "assets.lock: is not valid JSON" in result.stderr
