"""The runner's budget accounting: each job charged once, as billed, and nothing unpriced sent."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.client import ApiClient, DryRun
from pipeline.cost import estimate
from pipeline.credentials import Credentials
from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.errors import ApiUnreachable, BudgetReached
from pipeline.limits import Spending
from pipeline.report import Outcome, RunReport
from pipeline.wire import GenerateResult
from tests.conftest import WriteFile
from tests.e2e import FAST, generates
from tests.test_schedule import client_for, runner_for

TWO = """
    defaults: {model: model_bfl-flux-2-dev, width: 256, height: 256}
    items:
      - {id: a, prompt: a sword, seed: 1}
      - {id: b, prompt: a shield, seed: 2}
"""


class LosesAnswers(ApiClient):
    """Generate calls reach the API, but the first answer for each body (`sent=True`), or the
    first request itself (`sent=False`), is lost on the way: the outcome is unknown."""

    def __init__(self, emu: Emulator, *, sent: bool) -> None:
        creds = Credentials(emu.config.api_key, emu.config.api_secret)
        super().__init__(base_url=emu.base_url, credentials=creds, transport=emu.transport())
        self.sent = sent
        self.lost: set[str] = set()

    async def generate(
        self, model_id: str, body: Mapping[str, Any], *, dry_run: DryRun = False
    ) -> GenerateResult:
        key = json.dumps(body, sort_keys=True)
        if dry_run or key in self.lost:
            return await super().generate(model_id, body, dry_run=dry_run)
        self.lost.add(key)
        if self.sent:
            await super().generate(model_id, body)
        raise ApiUnreachable("the connection dropped", method="POST", maybe_sent=True)


async def run_priced(
    repo: Path, *, sent: bool, budget: float, priced: int = 2, **options: Any
) -> tuple[RunReport, Emulator]:
    """Run the two items through LosesAnswers under `budget`, the first `priced` of them
    estimated at 10 units each (the others could not be priced)."""
    emu = Emulator(EmulatorConfig(**FAST))
    async with LosesAnswers(emu, sent=sent) as client:
        runner = runner_for(repo, client, budget=budget, **options)
        estimates = {entry.fingerprint: 10.0 for entry in runner.plan.pending[:priced]}
        runner.spending = Spending(budget, estimates)
        return await runner.run(), emu


async def test_a_job_whose_answer_was_lost_is_charged_once_when_found_again(
    repo: Path, write: WriteFile
) -> None:
    write("manifests/icons.yaml", TWO)
    report, emu = await run_priced(repo, sent=True, budget=20.0)
    assert report.count(Outcome.GENERATED) == 2
    assert generates(emu) == 2 and emu.stats.duplicate_generates == 0
    assert report.spent == emu.stats.billed == 20.0


async def test_a_request_that_never_arrived_is_charged_once_when_sent_again(
    repo: Path, write: WriteFile
) -> None:
    """The lost request counts as maybe paid until the job list shows it was not; the resend
    replaces that charge instead of adding to it, so a budget that fits exactly still fits."""
    write("manifests/icons.yaml", TWO)
    report, emu = await run_priced(repo, sent=False, budget=20.0, ceiling=1)
    assert report.count(Outcome.GENERATED) == 2, [r.error for r in report.results]
    assert report.spent == emu.stats.billed == 20.0


async def test_under_a_budget_an_item_that_could_not_be_priced_is_not_sent(
    repo: Path, write: WriteFile
) -> None:
    """Only a step (whose input exists only during the run) is priced by a dry run then; a
    generation the preview could not price is never sent under a budget."""
    write("manifests/icons.yaml", TWO)
    report, emu = await run_priced(repo, sent=True, budget=100.0, priced=1)
    outcomes = {r.key: (r.outcome, r.error) for r in report.results}
    assert outcomes["icons/a"] == (Outcome.GENERATED, None)
    skipped, error = outcomes["icons/b"]
    assert skipped is Outcome.SKIPPED and isinstance(error, BudgetReached)
    assert "could not be priced" in str(error)
    assert generates(emu) == 1 and report.spent == 10.0


SIX = """
    defaults: {model: model_bfl-flux-2-dev, width: 256, height: 256}
    items:
""" + "".join(f"      - {{id: i{n}, prompt: thing {n}, seed: {n}}}\n" for n in range(6))


async def test_parallel_submissions_cannot_all_pass_one_check_of_the_budget(
    repo: Path, write: WriteFile
) -> None:
    """Eight slots, six items at the exact price of two: the reservation is taken with the
    check, before the intent is written, so exactly two are paid (a review found three)."""
    write("manifests/icons.yaml", SIX)
    emu = Emulator(EmulatorConfig(**FAST))
    async with client_for(emu) as client:
        runner = runner_for(repo, client, ceiling=8)
        priced = (await estimate(client, runner.plan.pending)).by_fingerprint()
        assert set(priced.values()) == {10.0}
        runner.spending = Spending(20.0, priced)
        report = await runner.run()
    assert report.count(Outcome.GENERATED) == 2 and report.count(Outcome.SKIPPED) == 4
    assert report.spent == emu.stats.billed == 20.0
