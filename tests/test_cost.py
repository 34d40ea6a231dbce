"""Cost preview and budget, end to end: the real CLI against the emulator's dry runs and bills.

The example game prices at 415 creative units on the emulator: 130 for training ember-pixel (six
images), 285 for its 21 items: 19 generations of model_bfl-flux-2-dev at 10 units an output
(gold-coin makes two) and the innkeeper's 8; for each of the 10 icon outputs a background removal
(2) and a 2x upscale (4); a caption (1) for each of the 7 portraits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.journal import Intent, Journal
from pipeline.lockfile import read_lock
from pipeline.state import STATE_DIR
from tests.conftest import MakeLocal, WriteFile
from tests.e2e import copy_examples, generates, invoke, lock_bytes, loopback_env, served, summary

TOTAL = 415.0
GENERATE = "POST /v1/generate/custom/{modelId}"


@pytest.fixture
def game(repo: Path) -> Path:
    return copy_examples(repo)


def test_plan_cost_prices_every_pending_item_with_dry_runs_and_pays_nothing(
    game: Path, make_local: MakeLocal
) -> None:
    emu = make_local()
    result = invoke(game, "plan", "--cost", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["cost"] == {"total": TOTAL, "unpriced": 0, "in_flight": 0}
    coin = next(item for item in doc["items"] if item["key"] == "ui-icons/gold-coin")
    assert coin["cost"] == {
        "units": 32.0,
        "error": None,
        "shared_with": None,
        "in_flight": False,
        "stages": {
            "generation": 20.0,
            "then[0] (photoroom-background-remover)": 4.0,
            "then[1] (upscale-v3)": 8.0,
        },
    }
    (training,) = doc["trainings"]
    assert training["cost"] == {"units": 130.0, "error": None}
    assert emu.stats.jobs_created == 0 and generates(emu) == 0 and not emu.stats.paid
    # every one a dry run: the 21 generations, and each distinct step once
    assert emu.stats.requests[GENERATE] == 21 + 2
    assert not (game / "assets.lock").exists()
    human = invoke(game, "plan", "--cost")
    assert (
        "estimated cost: 415 creative units for 21 items and 1 training (the local emulator's "
        "prices: nothing is charged)" in human.stderr
    )


def test_plan_cost_prices_only_what_run_would_pay_for(game: Path, make_local: MakeLocal) -> None:
    make_local()
    assert invoke(game, "run").exit_code == 0
    manifest = game / "manifests" / "tiles.yaml"
    manifest.write_text(manifest.read_text().replace("lava", "magma"))
    doc = json.loads(invoke(game, "plan", "--cost", "--json").stdout)
    priced = {item["key"]: item["cost"]["units"] for item in doc["items"] if "cost" in item}
    assert priced == {"tiles/magma": 10.0}
    assert doc["cost"]["total"] == 10.0
    assert invoke(game, "run").exit_code == 0
    nothing = invoke(game, "plan", "--cost")
    assert "estimated cost: 0 creative units for 0 items" in nothing.stderr


def test_items_sharing_a_generation_are_priced_once_and_bad_ones_are_located(
    repo: Path, write: WriteFile, make_local: MakeLocal
) -> None:
    write(
        "manifests/icons.yaml",
        """
        defaults: {model: model_bfl-flux-2-dev, width: 256, height: 256}
        items:
          - {id: a, prompt: a sword, seed: 1}
          - {id: b, prompt: a sword, seed: 1}
          - {id: c, prompt: a shield, seed: 2, width: 264}
        """,
    )
    make_local()
    result = invoke(repo, "plan", "--cost", "--json")
    assert result.exit_code == 0, result.stderr
    items = {item["key"]: item["cost"] for item in json.loads(result.stdout)["items"]}
    assert items["icons/a"]["units"] == 10.0
    assert items["icons/b"] == {
        "units": None,
        "error": None,
        "shared_with": "icons/a",
        "in_flight": False,
    }
    assert items["icons/c"]["units"] is None
    assert "manifests/icons.yaml:5:47: items[2].width:" in items["icons/c"]["error"]
    assert "multiple of 16" in items["icons/c"]["error"]
    human = invoke(repo, "plan", "--cost")
    assert "cannot price icons/c: manifests/icons.yaml:5:47:" in human.stderr
    assert "estimated cost: 10 creative units for 3 items (1 item share" in human.stderr


def test_plan_needs_no_credentials_for_the_scenario_backend_but_its_cost_preview_does(
    game: Path,
) -> None:
    planned = invoke(game, "plan", "--backend", "scenario")
    assert planned.exit_code == 0, planned.stderr
    assert "backend: scenario (asked for; planning needs no credentials)" in planned.stderr
    priced = invoke(game, "plan", "--backend", "scenario", "--cost")
    assert priced.exit_code == 2
    assert "SCENARIO_API_KEY" in priced.stderr


def test_a_run_over_budget_is_refused_before_anything_is_paid(
    game: Path, make_local: MakeLocal
) -> None:
    emu = make_local()
    result = invoke(game, "run", "--budget", "414")
    assert result.exit_code == 2, result.stderr
    assert "estimated at 415 creative units, over the budget of 414" in result.stderr
    assert "nothing was started" in result.stderr
    assert generates(emu) == 0 and not (game / "assets.lock").exists()


def test_a_run_within_budget_completes_and_reports_what_it_spent(
    game: Path, write: WriteFile, make_local: MakeLocal
) -> None:
    emu = make_local()
    write("pipeline.yaml", "budget: 415\n")
    result = invoke(game, "run", "--json")
    assert result.exit_code == 0, result.stderr
    assert summary(result)["spent"] == TOTAL == emu.stats.billed
    assert (
        "estimated cost: 415 creative units for 21 items and 1 training (budget 415; the local"
        in result.stderr
    )
    assert "415 creative units as priced by the local emulator; nothing charged" in result.stderr
    assert emu.stats.requests[GENERATE] == 23 + 41  # dry runs, then the paid ones
    emu.stats.reset()
    again = invoke(game, "run", "--json")  # nothing to do: nothing priced, nothing spent
    assert summary(again)["spent"] == 0 and sum(emu.stats.requests.values()) == 0


def test_a_bill_above_the_estimate_stops_new_jobs_at_the_budget_and_keeps_the_rest(
    game: Path, make_local: MakeLocal
) -> None:
    """Jobs bill twice their estimate: the run starts (the estimate fits), stops submitting once
    the next job could pass the budget, keeps what it paid for, and a rerun finishes the rest."""
    emu = make_local(bill_factor=2.0)
    result = invoke(game, "run", "--json", "--budget", "415", "--concurrency", "1")
    assert result.exit_code == 1, result.stderr
    doc = summary(result)
    skipped = [item for item in doc["items"] if item["state"] == "skipped"]
    done = [item for item in doc["items"] if item["state"] == "generated"]
    assert skipped and done and len(skipped) + len(done) == 21
    assert all(item["error"].startswith("not started: ") for item in skipped)
    assert doc["spent"] == emu.stats.billed <= 415
    assert f"{len(skipped)} not started (budget)" in result.stderr
    assert set(read_lock(game / "assets.lock").items) == {item["key"] for item in done}

    emu.stats.reset()
    rest = invoke(game, "run", "--json", "--budget", "1000")
    assert rest.exit_code == 0, rest.stderr
    assert summary(rest)["counts"]["generated"] == len(skipped)
    assert emu.stats.duplicate_generates == 0


def test_force_is_priced_too(game: Path, make_local: MakeLocal) -> None:
    emu = make_local()
    assert invoke(game, "run").exit_code == 0
    before = lock_bytes(game)
    refused = invoke(game, "run", "--force", "tiles", "--budget", "49")
    assert refused.exit_code == 2, refused.stderr
    assert "estimated at 50 creative units" in refused.stderr
    assert lock_bytes(game) == before
    emu.stats.reset()
    assert invoke(game, "run", "--force", "tiles", "--budget", "50").exit_code == 0
    assert generates(emu) == 5


def test_jobs_left_in_flight_by_an_earlier_run_are_not_counted_again(game: Path) -> None:
    """An intent with a job id is followed by the next run, not paid: the estimate leaves it
    out (over loopback: the journal is kept for the real API, not for the in-process backend)."""
    with served() as (_emu, url):
        env = loopback_env(url)
        doc = json.loads(invoke(game, "plan", "--cost", "--json", env=env).stdout)
        lava = next(item for item in doc["items"] if item["key"] == "tiles/lava")
        intent = Intent(lava["fingerprint"], lava["key"], "model_bfl-flux-2-dev", {}, "", "job_1")
        Journal(game / STATE_DIR).write(intent)
        doc = json.loads(invoke(game, "plan", "--cost", "--json", env=env).stdout)
    assert doc["cost"] == {"total": TOTAL - 10, "unpriced": 0, "in_flight": 1}
    lava = next(item for item in doc["items"] if item["key"] == "tiles/lava")
    assert lava["cost"]["in_flight"] is True and lava["cost"]["units"] == 10.0


def test_a_step_summary_is_appended_for_ci(
    game: Path, make_local: MakeLocal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_local()
    target = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    assert invoke(game, "plan", "--cost").exit_code == 0
    text = target.read_text()
    assert "### pipeline plan" in text and "| new |" in text
    assert "| `ui-icons/gold-coin` | new |  | 32 |" in text
    assert "Estimated cost: **415 creative units**." in text
    assert invoke(game, "run", "--budget", "500").exit_code == 0
    text = target.read_text()
    assert "### pipeline run" in text
    assert "Spent: **415 creative units** of a budget of 500." in text
    manifest = game / "manifests" / "tiles.yaml"
    manifest.write_text(manifest.read_text() + "  - {id: bad, prompt: x, sed: 1}\n")
    assert invoke(game, "plan").exit_code == 2
    assert "### pipeline plan: error" in target.read_text()
    assert "unknown key 'sed'" in target.read_text()


def test_an_unknown_model_is_located_by_the_cost_preview_and_the_run_alike(
    repo: Path, write: WriteFile, make_local: MakeLocal
) -> None:
    write(
        "manifests/icons.yaml",
        """
        items:
          - {id: a, prompt: a sword, model: model_nope}
        """,
    )
    make_local()
    located = "manifests/icons.yaml:2:37: items[0].model: no model 'model_nope' on this backend"
    priced = invoke(repo, "plan", "--cost")
    assert f"cannot price icons/a: {located}" in priced.stderr
    ran = invoke(repo, "run")
    assert ran.exit_code == 1 and f"icons/a: {located}" in ran.stderr
