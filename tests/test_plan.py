from __future__ import annotations

from pathlib import Path

import pytest

import pipeline.plan as plan_module
from pipeline.errors import InvalidInput
from pipeline.lockfile import read_lock
from pipeline.manifest import load_manifests, load_settings
from pipeline.plan import Plan, State, fingerprint_of, make_plan, request_of
from pipeline.state import STATE_DIR, StatCache
from tests.conftest import WriteFile
from tests.helpers import settle

ICONS = """
    collection: ui-icons
    defaults:
      model: model_bfl-flux-2-dev
      width: 64
      height: 64
      params: {guidance: 3.5}
    items:
      - id: iron-sword
        prompt: iron sword icon
        seed: 42
      - id: "{metal}-shield"
        matrix: {metal: [wooden, iron]}
        prompt: "{metal} shield icon"
      - id: coin
        prompt: gold coin
        outputs: 2
"""


def plan_of(root: Path, *select: str, backend: str = "local") -> Plan:
    settings = load_settings(root)
    collections = load_manifests(root, settings)
    return make_plan(
        [item for collection in collections for item in collection.items],
        read_lock(root / settings.lockfile),
        backend=backend,
        output_dir=root / settings.output,
        stat_cache=StatCache.load(root / STATE_DIR),
        select=select,
    )


def states(plan: Plan) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {entry.key: (entry.state.value, entry.reasons) for entry in plan.entries}


def fingerprints(plan: Plan) -> dict[str, str | None]:
    return {entry.key.partition("/")[2]: entry.fingerprint for entry in plan.entries}


def test_everything_is_new_without_a_lock(repo: Path, write: WriteFile) -> None:
    write("manifests/icons.yaml", ICONS)
    assert {state for state, _ in states(plan_of(repo)).values()} == {"new"}
    assert len(plan_of(repo).pending) == 4


def test_settled_items_are_unchanged(repo: Path, write: WriteFile) -> None:
    write("manifests/icons.yaml", ICONS)
    settle(repo)
    plan = plan_of(repo)
    assert plan.count(State.UNCHANGED) == 4
    assert plan.pending == []


def test_changing_a_prompt_changes_only_that_item_and_names_the_reason(
    repo: Path, write: WriteFile
) -> None:
    path = write("manifests/icons.yaml", ICONS)
    settle(repo)
    before = fingerprints(plan_of(repo))
    path.write_text(path.read_text().replace("iron sword icon", "steel sword icon"))
    plan = plan_of(repo)
    after = fingerprints(plan)
    assert [key for key in before if before[key] != after[key]] == ["iron-sword"]
    assert states(plan)["ui-icons/iron-sword"] == ("changed", ("prompt",))


def test_reasons_name_each_param_and_input(repo: Path, write: WriteFile) -> None:
    path = write("manifests/icons.yaml", ICONS)
    settle(repo)
    text = path.read_text().replace("guidance: 3.5", "guidance: 5, steps: 30")
    path.write_text(text.replace("seed: 42", "seed: 43"))
    result = states(plan_of(repo))
    assert result["ui-icons/iron-sword"] == ("changed", ("params.guidance", "params.steps", "seed"))
    assert result["ui-icons/coin"] == ("changed", ("params.guidance", "params.steps"))


def test_backend_is_part_of_the_fingerprint(repo: Path, write: WriteFile) -> None:
    write("manifests/icons.yaml", ICONS)
    settle(repo, backend="local")
    result = states(plan_of(repo, backend="scenario"))
    assert result["ui-icons/iron-sword"] == ("changed", ("backend",))


def test_renaming_the_file_or_reordering_items_changes_no_fingerprint(
    repo: Path, write: WriteFile
) -> None:
    path = write("manifests/icons.yaml", ICONS)
    before = fingerprints(plan_of(repo))
    path.unlink()
    reordered = ICONS.replace(
        "      - id: coin\n        prompt: gold coin\n        outputs: 2\n", ""
    ).replace(
        "    items:\n",
        "    items:\n      - id: coin\n        outputs: 2\n"
        "        prompt: gold coin   # a comment\n",
    )
    write("manifests/other-name.yaml", reordered)
    assert fingerprints(plan_of(repo)) == before


def test_renamed_collection_is_a_free_move_even_with_derived_seeds(
    repo: Path, write: WriteFile
) -> None:
    path = write("manifests/icons.yaml", ICONS)
    settle(repo)
    before = fingerprints(plan_of(repo))
    path.write_text(path.read_text().replace("collection: ui-icons", "collection: icons"))
    plan = plan_of(repo)
    assert fingerprints(plan) == before
    assert states(plan) == {
        "icons/iron-sword": ("missing", ("moved from ui-icons/iron-sword",)),
        "icons/wooden-shield": ("missing", ("moved from ui-icons/wooden-shield",)),
        "icons/iron-shield": ("missing", ("moved from ui-icons/iron-shield",)),
        "icons/coin": ("missing", ("moved from ui-icons/coin",)),
    }
    shield = next(e for e in plan.entries if e.key == "icons/iron-shield")
    assert shield.item is not None and shield.locked is not None
    assert shield.item.seed == shield.locked.request["seed"]  # the paid-for seed is kept


def test_missing_altered_and_intact_files(repo: Path, write: WriteFile) -> None:
    write("manifests/icons.yaml", ICONS)
    settle(repo)
    out = repo / "output" / "ui-icons"
    (out / "iron-sword.png").unlink()
    (out / "wooden-shield.png").write_bytes(b"short")
    data = bytearray((out / "iron-shield.png").read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    (out / "iron-shield.png").write_bytes(bytes(data))
    result = states(plan_of(repo))
    assert result["ui-icons/iron-sword"] == ("missing", ("output/ui-icons/iron-sword.png is gone",))
    state, (reason,) = result["ui-icons/wooden-shield"]
    assert state == "missing" and reason.startswith(
        "output/ui-icons/wooden-shield.png was altered (size 5"
    )
    assert result["ui-icons/iron-shield"] == (
        "missing",
        ("output/ui-icons/iron-shield.png was altered (content differs from the lock)",),
    )
    assert result["ui-icons/coin"] == ("unchanged", ())


def test_stat_cache_spares_the_hash(
    repo: Path, write: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("manifests/icons.yaml", ICONS)
    settle(repo)
    first = plan_of(repo)
    assert len(first.hashed) == 5  # every file hashed once: no cache yet
    cache = StatCache.load(repo / STATE_DIR)
    for name, (stat, digest) in first.hashed.items():
        cache.remember(name, stat, digest)
    cache.save(repo / STATE_DIR)

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"hashed {path} although the stat cache vouches for it")

    monkeypatch.setattr(plan_module, "hash_file", no_hashing)
    assert plan_of(repo).count(State.UNCHANGED) == 4


def test_orphans_are_listed_and_not_pending(repo: Path, write: WriteFile) -> None:
    path = write("manifests/icons.yaml", ICONS)
    settle(repo)
    path.write_text(
        path.read_text().replace("matrix: {metal: [wooden, iron]}", "matrix: {metal: [iron]}")
    )
    plan = plan_of(repo)
    assert states(plan)["ui-icons/wooden-shield"] == ("orphaned", ("no longer in the manifests",))
    assert plan.pending == []


def test_select_by_collection_item_and_glob(repo: Path, write: WriteFile) -> None:
    write("manifests/icons.yaml", ICONS)
    write(
        "manifests/tiles.yaml",
        """
        defaults: {model: m}
        items:
          - {id: grass, prompt: grass}
    """,
    )
    assert [e.key for e in plan_of(repo, "tiles").entries] == ["tiles/grass"]
    assert [e.key for e in plan_of(repo, "ui-icons/*-shield").entries] == [
        "ui-icons/wooden-shield",
        "ui-icons/iron-shield",
    ]
    with pytest.raises(InvalidInput, match="'nope' matches no collection or item"):
        plan_of(repo, "nope")


def test_recipe_version_bump_is_the_reason(
    repo: Path, write: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("manifests/icons.yaml", ICONS)
    settle(repo)
    monkeypatch.setattr(plan_module, "RECIPE_VERSION", plan_module.RECIPE_VERSION + 1)
    assert states(plan_of(repo))["ui-icons/coin"] == ("changed", ("recipe",))


def test_fingerprint_ignores_absent_optionals_and_key_order() -> None:
    request = {"backend": "local", "model": "m", "prompt": "p", "seed": 1, "outputs": 1}
    assert fingerprint_of(request) == fingerprint_of(dict(reversed(request.items())))
    assert fingerprint_of(request) != fingerprint_of({**request, "width": 512})


def test_request_of_leaves_out_the_collection(repo: Path, write: WriteFile) -> None:
    write("manifests/icons.yaml", ICONS)
    item = load_manifests(repo, load_settings(repo))[0].items[0]
    assert request_of(item, "local") == {
        "backend": "local",
        "model": "model_bfl-flux-2-dev",
        "prompt": "iron sword icon",
        "seed": 42,
        "outputs": 1,
        "width": 64,
        "height": 64,
        "params": {"guidance": 3.5},
    }


def test_items_that_would_write_the_same_file_are_refused(repo: Path, write: WriteFile) -> None:
    write(
        "manifests/icons.yaml",
        """
        defaults: {model: m, prompt: p}
        items:
          - {id: coin, outputs: 2}
          - {id: Coin_2}
        """,
    )
    with pytest.raises(InvalidInput) as info:
        plan_of(repo)
    assert str(info.value) == (
        "manifests/icons.yaml:4:10: items[1].id: icons/Coin_2 would write icons/Coin_2.png, as "
        "does icons/coin (manifests/icons.yaml:3:10: items[0].id); rename one"
    )
