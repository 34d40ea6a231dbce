"""The CI workflow template, .github/workflows/assets.yml: linted, and held to its promises.

Two linters from the package registries check it offline: check-jsonschema against GitHub's
workflow schema (vendored in the package) and zizmor's security audits. The rest pins down what
the README promises a team that copies it: when it runs, least privilege, secrets only where they
are needed, one run on main at a time, paid results published even after a partial failure, and
`pipeline` commands that exist. Its shell steps run here too, against a fake `pipeline` and a
local git remote: nothing touches the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.lockfile import LockEntry, Lockfile, OutputRecord, render_lock

ROOT = Path(__file__).parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "assets.yml"
BIN = Path(sys.executable).parent  # the venv's own executables
STATUS_CHECKS = ("always()", "!cancelled()")


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    doc: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    if True in doc:  # YAML 1.1 reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


def _tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is missing next to {sys.executable}: pip install -e '.[dev]'"
    return str(path)


def _offline_env() -> dict[str, str]:
    tokens = {"GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN"}
    return {name: value for name, value in os.environ.items() if name not in tokens}


def _steps(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_id, job in workflow["jobs"].items():
        for step in job["steps"]:
            yield job_id, step


def _step(workflow: dict[str, Any], job_id: str, name: str) -> dict[str, Any]:
    (step,) = [s for s in workflow["jobs"][job_id]["steps"] if s.get("name") == name]
    return step


def _index(workflow: dict[str, Any], job_id: str, match: str) -> int:
    steps = workflow["jobs"][job_id]["steps"]
    (index,) = [i for i, s in enumerate(steps) if match in (s.get("uses", "") + s.get("name", ""))]
    return index


# --- Linters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"]
)
def test_workflow_matches_githubs_schema(schema: str) -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", schema, str(WORKFLOW)],
        capture_output=True,
        text=True,
        env=_offline_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            _tool("zizmor"),
            "--offline",
            "--no-progress",
            "--color=never",
            f"--cache-dir={tmp_path}",
            str(WORKFLOW),
        ],
        capture_output=True,
        text=True,
        env=_offline_env(),
        timeout=60,
    )
    # Exit 0 means no finding at the default (regular) persona; 10-14 name the worst severity.
    assert result.returncode == 0, f"zizmor exit {result.returncode}:\n{result.stdout}"


def test_every_script_is_valid_bash(workflow: dict[str, Any]) -> None:
    for job_id, step in _steps(workflow):
        if "run" in step:
            result = subprocess.run(
                ["bash", "-n", "-c", step["run"]], capture_output=True, text=True, timeout=10
            )
            assert result.returncode == 0, f"{job_id} / {step['name']}: {result.stderr}"


# --- Structure --------------------------------------------------------------------------------


def test_runs_on_manifest_changes_in_prs_and_on_main(workflow: dict[str, Any]) -> None:
    on = workflow["on"]
    for event in ("pull_request", "push"):
        assert {"manifests/**", "pipeline.yaml", "assets.lock"} <= set(on[event]["paths"])
    assert on["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in on
    jobs = workflow["jobs"]
    assert "pull_request" in jobs["plan"]["if"]
    assert "github.ref == 'refs/heads/main'" in jobs["run"]["if"]
    assert jobs["commit"]["needs"] == "run"


def test_the_choices_are_set_once_at_the_top(workflow: dict[str, Any]) -> None:
    env = workflow["env"]
    assert "PUBLISH" not in env  # the lockfile is always committed: it records what was paid
    assert env["COMMIT_OUTPUTS"] in {"true", "false"}
    assert env["PIPELINE_PACKAGE"] == "."  # here: the example game is the project itself
    assert 'PIPELINE_PACKAGE: "pipeline @ git+https://github.com/' in WORKFLOW.read_text()
    for job in workflow["jobs"].values():
        assert "env" not in job  # the choices live in the workflow's env only


def test_permissions_are_least_privilege(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {}
    jobs = workflow["jobs"]
    assert jobs["plan"]["permissions"] == {"contents": "read"}
    assert jobs["run"]["permissions"] == {"contents": "read"}
    assert jobs["commit"]["permissions"] == {"contents": "write"}
    for job_id, step in _steps(workflow):
        if "git push" in step.get("run", ""):
            assert job_id == "commit"


def test_main_runs_one_at_a_time_and_never_cancels(workflow: dict[str, Any]) -> None:
    concurrency = workflow["concurrency"]
    assert "github.ref" in concurrency["group"]
    # false on main (push, dispatch); only a pull request's superseded plan is cancelled
    assert concurrency["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    assert concurrency.get("queue", "single") == "single"
    for job in workflow["jobs"].values():
        assert "concurrency" not in job
    # A run that waited must start from the lockfile the previous run committed.
    checkout = workflow["jobs"]["run"]["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["ref"] == "${{ github.ref }}"


@pytest.mark.parametrize(
    ("restore", "save", "path", "prefix"),
    [
        (
            "Restore the run state (.pipeline/)",
            "Save the run state (.pipeline/)",
            ".pipeline",
            "pipeline-state-",
        ),
        (
            "Restore the generated files",
            "Save the generated files",
            "${{ env.OUTPUT_DIR }}",
            "pipeline-output-",
        ),
    ],
)
def test_run_state_and_files_are_restored_and_always_saved(
    workflow: dict[str, Any], restore: str, save: str, path: str, prefix: str
) -> None:
    steps = workflow["jobs"]["run"]["steps"]
    restored, saved = _step(workflow, "run", restore), _step(workflow, "run", save)
    assert steps.index(restored) < _index(workflow, "run", "Run") < steps.index(saved)
    assert restored["uses"].startswith("actions/cache/restore@")
    assert saved["uses"].startswith("actions/cache/save@")
    assert restored["with"]["path"] == saved["with"]["path"] == path
    assert restored["with"]["key"] == saved["with"]["key"]
    assert "github.run_id" in saved["with"]["key"]
    assert restored["with"]["restore-keys"] == prefix
    assert saved["with"]["key"].startswith(prefix)
    assert saved["if"].startswith("always()")
    # pull requests' plans read main's newest copies (and never save)
    plan = [s for s in workflow["jobs"]["plan"]["steps"] if "actions/cache" in s.get("uses", "")]
    assert {s["with"]["restore-keys"] for s in plan} == {"pipeline-state-", "pipeline-output-"}
    assert all(s["uses"].startswith("actions/cache/restore@") for s in plan)


def test_generated_files_travel_in_the_cache_only_when_not_committed(
    workflow: dict[str, Any],
) -> None:
    for job_id, step in _steps(workflow):
        if step.get("with", {}).get("path") == "${{ env.OUTPUT_DIR }}":
            assert "env.COMMIT_OUTPUTS != 'true'" in step["if"], (job_id, step["name"])


def test_results_are_published_after_a_failed_run_not_after_invalid_manifests(
    workflow: dict[str, Any],
) -> None:
    run_job = workflow["jobs"]["run"]
    run = _index(workflow, "run", "Run")
    gather = _step(workflow, "run", "Gather the results")
    upload = _step(workflow, "run", "Upload the results")
    assert run < run_job["steps"].index(gather) < run_job["steps"].index(upload)
    for step in (gather, upload):
        assert any(check in step["if"] for check in STATUS_CHECKS), step["if"]
    assert "steps.validate.outcome == 'success'" in gather["if"]
    assert "steps.run" not in gather["if"]  # whatever run's exit: 2 can follow paid work
    assert "steps.gather.outputs.found == 'true'" in upload["if"]
    assert upload["uses"].startswith("actions/upload-artifact@")
    commit = workflow["jobs"]["commit"]
    assert any(check in commit["if"] for check in STATUS_CHECKS), commit["if"]
    assert "needs.run.outputs.commit == 'true'" in commit["if"]
    assert run_job["outputs"]["commit"] == "${{ steps.upload.outcome == 'success' }}"
    # ... and the job still fails when `run` did: no step may swallow its exit code.
    for _, step in _steps(workflow):
        assert "continue-on-error" not in step


def test_secrets_reach_only_the_steps_that_need_them(workflow: dict[str, Any]) -> None:
    assert "secrets." not in json.dumps({k: v for k, v in workflow.items() if k != "jobs"})
    users = set()
    for job_id, step in _steps(workflow):
        assert "${{" not in step.get("run", ""), f"{job_id} / {step['name']}: use env: instead"
        outside_env = {k: v for k, v in step.items() if k != "env"}
        assert "secrets." not in json.dumps(outside_env), f"{job_id} / {step['name']}"
        if "secrets." in json.dumps(step.get("env", {})):
            users.add((job_id, step["name"]))
    for job in workflow["jobs"].values():
        assert "secrets." not in json.dumps({k: v for k, v in job.items() if k != "steps"})
    assert users == {("plan", "Plan"), ("run", "Run")}


def test_every_action_is_pinned_to_a_commit(workflow: dict[str, Any]) -> None:
    uses = [step["uses"] for _, step in _steps(workflow) if "uses" in step]
    assert uses
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), ref
    lines = [line for line in WORKFLOW.read_text().splitlines() if "uses:" in line]
    assert len(lines) == len(uses)
    for line in lines:
        assert re.search(r"@[0-9a-f]{40} # v\d+(\.\d+)*$", line), f"no version comment: {line}"


def test_checkouts_keep_no_credentials(workflow: dict[str, Any]) -> None:
    checkouts = [
        s for _, s in _steps(workflow) if s.get("uses", "").startswith("actions/checkout@")
    ]
    assert len(checkouts) == 3
    for step in checkouts:
        assert step["with"]["persist-credentials"] is False


_GROUPS = {"lock"}  # commands whose first word is a subcommand of theirs


def _pipeline_calls(script: str) -> Iterator[tuple[str, set[str]]]:
    """(subcommand, flags) of each `pipeline ...` in a script, with flags added to `args`;
    a group's subcommand is named with it (`lock merge`)."""
    extra = " ".join(re.findall(r"args\+=\(([^)]*)\)", script))
    for match in re.finditer(r"\bpipeline\s+([a-z][a-z-]*)((?: [a-z][a-z-]*)?)([^\n]*)", script):
        command, sub, rest = match.groups()
        if command in _GROUPS:
            command += sub
        else:
            rest = sub + rest
        if '"${args[@]}"' in rest:
            rest += " " + extra
        yield command, set(re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", rest))


def _options(command: str) -> set[str]:
    """The flags `pipeline COMMAND --help` lists."""
    result = CliRunner().invoke(cli, [*command.split(), "--help"])
    assert result.exit_code == 0, f"`pipeline {command}` does not exist: {result.output}"
    _, _, listing = result.output.partition("Options:")
    flags: set[str] = set()
    for line in listing.splitlines():
        column = re.match(r" {2}(-\S.*?)(?: {2,}|$)", line)
        if column:
            flags |= set(re.findall(r"--?[a-zA-Z][\w-]*", column.group(1)))
    return flags


def test_the_pipeline_commands_it_calls_exist(workflow: dict[str, Any]) -> None:
    calls: dict[str, set[str]] = {}
    for _, step in _steps(workflow):
        for command, flags in _pipeline_calls(step.get("run", "")):
            calls.setdefault(command, set()).update(flags)
    assert calls.keys() >= {"validate", "plan", "run"}
    assert "--cost" in calls["plan"]
    assert "--budget" in calls["run"]
    assert calls["lock merge"] == {"--marker-size", "--path"}
    for command, flags in calls.items():
        missing = flags - _options(command)
        assert not missing, f"`pipeline {command}` has no {sorted(missing)}"


# --- Its scripts, run here ---------------------------------------------------------------------

FAKE_PIPELINE = """#!/bin/sh
echo "$* key=${SCENARIO_API_KEY-unset}" >> "$CALLS"
exit "${FAKE_EXIT:-0}"
"""


def _run_script(
    workflow: dict[str, Any],
    script: str,
    env: dict[str, str],
    *,
    home: Path,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """A step's script as GitHub runs it (`shell: bash`), with the workflow's env, in `cwd`
    (default: `home`, which holds the script file)."""
    path = home / "step.sh"
    path.write_text(script)
    full = {"PATH": os.environ["PATH"], "HOME": str(home), **workflow["env"], **env}
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
        cwd=cwd or home,
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def fake_pipeline(tmp_path: Path) -> dict[str, str]:
    """Env for a `pipeline` on PATH that records its arguments in $CALLS."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pipeline").write_text(FAKE_PIPELINE)
    (bin_dir / "pipeline").chmod(0o755)
    for name in ("summary.md", "output.txt", "calls.txt"):
        (tmp_path / name).touch()
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(tmp_path / "calls.txt"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
    }


@pytest.mark.parametrize(
    ("key", "secret", "call"),
    [("k", "s", "plan --cost key=k"), ("", "", "plan key=unset"), ("k", "", "plan key=unset")],
)
def test_the_plan_is_priced_only_with_the_secrets(
    workflow: dict[str, Any],
    tmp_path: Path,
    fake_pipeline: dict[str, str],
    key: str,
    secret: str,
    call: str,
) -> None:
    script = _step(workflow, "plan", "Plan")["run"]
    env = {**fake_pipeline, "SCENARIO_API_KEY": key, "SCENARIO_API_SECRET": secret}
    result = _run_script(workflow, script, env, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "calls.txt").read_text() == call + "\n"
    summary = (tmp_path / "summary.md").read_text()
    if "--cost" in call:
        assert summary == ""
    else:
        assert "Cost preview skipped" in summary
        assert "`backend: scenario`" in summary


@pytest.mark.parametrize(("status", "budget"), [(0, ""), (1, "250"), (2, ""), (130, "")])
def test_the_run_step_keeps_its_exit_code(
    workflow: dict[str, Any],
    tmp_path: Path,
    fake_pipeline: dict[str, str],
    status: int,
    budget: str,
) -> None:
    script = _step(workflow, "run", "Run")["run"]
    env = {**fake_pipeline, "FAKE_EXIT": str(status), "BUDGET": budget}
    env |= {"SCENARIO_API_KEY": "k", "SCENARIO_API_SECRET": "s"}
    result = _run_script(workflow, script, env, home=tmp_path)
    assert result.returncode == status
    assert (tmp_path / "output.txt").read_text() == f"status={status}\n"
    flags = f" --budget {budget}" if budget else ""
    assert (tmp_path / "calls.txt").read_text() == f"run{flags} key=k\n"
    assert "::warning" not in result.stdout


def test_the_run_step_warns_without_secrets(
    workflow: dict[str, Any], tmp_path: Path, fake_pipeline: dict[str, str]
) -> None:
    script = _step(workflow, "run", "Run")["run"]
    env = {**fake_pipeline, "BUDGET": "", "SCENARIO_API_KEY": "", "SCENARIO_API_SECRET": ""}
    result = _run_script(workflow, script, env, home=tmp_path)
    assert result.returncode == 0
    assert "::warning title=No Scenario secrets::" in result.stdout
    assert (tmp_path / "calls.txt").read_text() == "run key=unset\n"


def test_the_results_keep_the_repos_layout(
    workflow: dict[str, Any], tmp_path: Path, fake_pipeline: dict[str, str]
) -> None:
    script = _step(workflow, "run", "Gather the results")["run"]
    repo = tmp_path / "repo"
    (repo / "output" / "ui-icons").mkdir(parents=True)
    (repo / "output" / "ui-icons" / "iron-sword.png").write_bytes(b"png")
    env = {**fake_pipeline, "RUNNER_TEMP": str(tmp_path / "runner")}
    result = _run_script(workflow, script, env, home=tmp_path, cwd=repo)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "output.txt").read_text() == ""  # no lockfile: nothing to publish
    (repo / "assets.lock").write_text("{}\n")
    result = _run_script(workflow, script, env, home=tmp_path, cwd=repo)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "output.txt").read_text() == "found=true\n"
    results = tmp_path / "runner" / "results"
    assert sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.is_file()) == [
        "assets.lock",
        "output/ui-icons/iron-sword.png",
    ]


TOKEN = "ghs_not-a-real-token"


def _git_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }


def _git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=_git_env(cwd), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _lock(**versions: str) -> str:
    """A real lockfile: item `icons/<key>` made from inputs named by its version."""
    lock = Lockfile()
    for key, version in versions.items():
        digest = hashlib.sha256(version.encode()).hexdigest()
        lock.items[f"icons/{key}"] = LockEntry(
            fingerprint=digest,
            request={"backend": "scenario", "prompt": version, "seed": 1},
            outputs=(OutputRecord(f"icons/{key}.png", digest, 1, 8, 8),),
        )
    return render_lock(lock).decode()


class Remote:
    """A bare repo standing in for GitHub, a developer's clone, and the commit job's checkout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bare = root / "org" / "game.git"
        self.bare.mkdir(parents=True)
        _git(self.bare, "init", "--quiet", "--bare", "--initial-branch=main")
        self.dev = root / "dev"
        _git(root, "clone", "--quiet", str(self.bare), str(self.dev))
        attributes = (ROOT / ".gitattributes").read_text()  # as the game repo commits it
        self.push(
            {
                "assets.lock": _lock(a="a1", m="m1", z="z1"),
                "manifests/x.yaml": "x\n",
                ".gitattributes": attributes,
            }
        )
        self.base = self.tip()

    def push(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            (self.dev / name).parent.mkdir(parents=True, exist_ok=True)
            (self.dev / name).write_text(text)
        _git(self.dev, "add", "--all")
        _git(self.dev, "commit", "--quiet", "--message", "dev")
        _git(self.dev, "push", "--quiet", "origin", "HEAD:main")

    def tip(self) -> str:
        return _git(self.bare, "rev-parse", "main")

    def commit_job(self, workflow: dict[str, Any], lock: str) -> subprocess.CompletedProcess[str]:
        """The commit job: a shallow checkout of the run's base, its results, the step."""
        workspace = self.root / "workspace"
        workspace.mkdir()
        _git(workspace, "init", "--quiet")
        _git(workspace, "fetch", "--quiet", "--depth=1", f"file://{self.bare}", self.base)
        _git(workspace, "checkout", "--quiet", "FETCH_HEAD")
        results = self.root / "runner" / "results"
        results.mkdir(parents=True)
        (results / "assets.lock").write_text(lock)
        (self.root / "summary.md").touch()
        step = _step(workflow, "commit", "Commit and push")
        shims = self.root / "bin"  # the job's installed `pipeline`, for the merge driver
        shims.mkdir()
        (shims / "pipeline").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pipeline "$@"\n')
        (shims / "pipeline").chmod(0o755)
        env = {
            **_git_env(self.root),
            "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
            **{name: value for name, value in step["env"].items() if name.startswith("GIT_")},
            "GITHUB_TOKEN": TOKEN,
            "BRANCH": "main",
            "RUNNER_TEMP": str(self.root / "runner"),
            "GITHUB_STEP_SUMMARY": str(self.root / "summary.md"),
            "GITHUB_SERVER_URL": f"file://{self.root}",
            "GITHUB_REPOSITORY": "org/game",
            "GITHUB_RUN_NUMBER": "7",
        }
        result = _run_script(workflow, step["run"], env, home=self.root, cwd=workspace)
        assert TOKEN not in result.stdout + result.stderr
        return result

    def summary(self) -> str:
        return (self.root / "summary.md").read_text()


def test_the_lockfile_is_committed_onto_a_branch_that_moved(
    workflow: dict[str, Any], tmp_path: Path
) -> None:
    remote = Remote(tmp_path)
    remote.push({"assets.lock": _lock(a="a2", m="m1", z="z1"), "manifests/x.yaml": "y\n"})
    result = remote.commit_job(workflow, _lock(a="a1", m="m1", z="z2"))
    assert result.returncode == 0, result.stdout + result.stderr
    log = _git(remote.bare, "log", "--format=%an <%ae>|%s", "main").splitlines()
    assert log[0] == (
        "github-actions[bot] <41898282+github-actions[bot]@users.noreply.github.com>"
        "|assets: update assets.lock from run 7 [skip ci]"
    )
    assert len(log) == 3
    assert _git(remote.bare, "show", "main:assets.lock") + "\n" == _lock(a="a2", m="m1", z="z2")
    assert _git(remote.bare, "show", "main:manifests/x.yaml") == "y"
    assert "Committed" in remote.summary()


def test_items_added_on_main_and_by_the_run_side_by_side_merge_with_the_driver(
    workflow: dict[str, Any], tmp_path: Path
) -> None:
    """Plain git conflicts on two items added between the same neighbours; the commit job's
    rebase goes through `pipeline lock merge` and keeps both."""
    remote = Remote(tmp_path)
    remote.push({"assets.lock": _lock(a="a1", b="b1", m="m1", z="z1")})
    result = remote.commit_job(workflow, _lock(a="a1", c="c1", m="m1", z="z1"))
    assert result.returncode == 0, result.stdout + result.stderr
    merged = _git(remote.bare, "show", "main:assets.lock") + "\n"
    assert merged == _lock(a="a1", b="b1", c="c1", m="m1", z="z1")


def test_nothing_is_committed_when_the_lockfile_did_not_change(
    workflow: dict[str, Any], tmp_path: Path
) -> None:
    remote = Remote(tmp_path)
    result = remote.commit_job(workflow, _lock(a="a1", m="m1", z="z1"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert remote.tip() == remote.base
    assert "Nothing new to commit" in remote.summary()


def test_a_lockfile_that_cannot_be_replayed_fails_and_points_at_the_artifact(
    workflow: dict[str, Any], tmp_path: Path
) -> None:
    remote = Remote(tmp_path)
    remote.push({"assets.lock": _lock(a="a1", m="m1", z="z-human")})
    moved = remote.tip()
    result = remote.commit_job(workflow, _lock(a="a1", m="m1", z="z-run"))
    assert result.returncode == 1
    assert "::error title=Lockfile not committed::" in result.stdout
    assert "artifact" in result.stdout
    assert remote.tip() == moved
