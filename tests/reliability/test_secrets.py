"""Suite 5, secrets: the API key and secret never appear in any output, log or file.

Credentials are set to distinctive values, then every command is driven into its failure modes:
401 (a served emulator that accepts other credentials), 500s, dropped connections and timeouts,
a bad manifest, Ctrl-C, and debug logging of httpx/httpcore/uvicorn switched on (the CLI has no
verbosity flag or SCENARIO_LOG variable; `logging.basicConfig(level=DEBUG)` in the process is the
loudest it gets). Searched: stdout and stderr, the test process's log records (the served
emulator's side), and every file under the repo (.pipeline/, the lockfile, output/*/index.json),
for the key, the secret, their Basic-auth base64 form and their distinctive halves.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import copy_examples, invoke, served
from tests.reliability.conftest import FULL

# The fast slice runs the fault tests on one collection (retries back off for real seconds).
SELECT = [] if FULL else ["tiles"]
KEY = "KEY-3f9a61c0d2e84b7f"
SECRET = "SECRET-b71c94e05a3d42f8"
TOKEN = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
NEEDLES = [
    KEY,
    SECRET,
    TOKEN,
    TOKEN.rstrip("="),
    base64.urlsafe_b64encode(f"{KEY}:{SECRET}".encode()).decode(),
    base64.b64encode(KEY.encode()).decode().rstrip("="),
    base64.b64encode(SECRET.encode()).decode().rstrip("="),
    "3f9a61c0",  # a key cut short is still a leak
    "b71c94e0",
    "5a3d42f8",
]
DEBUG_RUN = (
    "import logging, runpy, sys; logging.basicConfig(level=logging.DEBUG); "
    "sys.argv = ['pipeline', *sys.argv[1:]]; runpy.run_module('pipeline', run_name='__main__')"
)


def leaks(text: str | bytes) -> list[str]:
    """The needles found in `text`."""
    data = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return [needle for needle in NEEDLES if needle in data]


def assert_no_leak(root: Path, *outputs: str) -> None:
    """No needle in the given outputs, nor in any file under the repo."""
    for output in outputs:
        assert not leaks(output), f"{leaks(output)} in output:\n{output[-3000:]}"
    for path in root.rglob("*"):
        if path.is_file():
            found = leaks(path.read_bytes())
            assert not found, f"{found} in {path.relative_to(root)}"


def env_with(url: str, *, sdk_names: bool = False) -> dict[str, str]:
    """Environment for the CLI: the distinctive credentials, pointed at a served emulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    names = ("SCENARIO_SDK_API_KEY", "SCENARIO_SDK_API_SECRET") if sdk_names else None
    key_name, secret_name = names or ("SCENARIO_API_KEY", "SCENARIO_API_SECRET")
    env.update({key_name: KEY, secret_name: SECRET, "SCENARIO_BASE_URL": url, "NO_COLOR": "1"})
    return env


def debug_process(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess with every logger at DEBUG on stderr."""
    return subprocess.run(
        [sys.executable, "-c", DEBUG_RUN, "-C", str(root), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def game(repo: Path) -> Path:
    return copy_examples(repo)


@pytest.fixture
def emulator_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record of this process (the served emulator's side) at DEBUG."""
    caplog.set_level(logging.DEBUG)
    yield caplog


def test_the_search_finds_each_form_of_the_credentials() -> None:
    """The haystack search itself works: a header, a truncated key and a base64 token are hits."""
    assert leaks(f"Authorization: Basic {TOKEN}")
    assert leaks(f"key {KEY[:12]}...")
    assert leaks(SECRET.encode())
    assert not leaks("Credentials(key='KE…', secret=<redacted>)")


COMMANDS = [
    ["validate"],
    ["plan"],
    ["plan", "--json"],
    ["plan", "--check"],
    ["run"],
    ["run", "--json"],
    ["run", "--backend", "scenario", "ui-icons/iron-sword"],
    ["prune", "--dry-run"],
    ["prune"],
    ["plan", "--cost"],
    ["plan", "--cost", "--json"],
    ["run", "--budget", "100", "--json"],
    ["emulator", "--help"],
    ["--help"],
]


@pytest.mark.parametrize("sdk_names", [False, True], ids=["SCENARIO_API_*", "SCENARIO_SDK_*"])
def test_a_401_leaks_nothing_from_any_command(
    game: Path, emulator_logs: pytest.LogCaptureFixture, sdk_names: bool
) -> None:
    """Every command, credentials the API refuses (401): the failure is said, the key is not."""
    outputs = []
    with served(api_key="other-key", api_secret="other-secret") as (_emu, url):
        env = env_with(url, sdk_names=sdk_names)
        env["GITHUB_STEP_SUMMARY"] = str(game / "step-summary.md")  # searched with the repo
        for command in COMMANDS:
            result = invoke(game, *command, env=env)
            assert result.exit_code in (0, 1), (command, result.output)
            outputs.append(result.output)
        debug = debug_process(game, env, "run", "--json")
    assert debug.returncode == 1, debug.stderr
    assert "HTTP 401" in debug.stdout + debug.stderr
    assert "DEBUG" in debug.stderr  # the logging really was on
    assert "HTTP 401" in (game / "step-summary.md").read_text()
    assert_no_leak(game, *outputs, debug.stdout, debug.stderr, emulator_logs.text)


def test_server_errors_drops_and_timeouts_leak_nothing(
    game: Path, emulator_logs: pytest.LogCaptureFixture
) -> None:
    """500s, 503s, dropped connections and timeouts, with DEBUG logging: nothing leaks, the run
    ends 0 or 1 with no traceback, and the lock and index files hold no credential."""
    faults = "error_500=0.15,error_503=0.1,drop=0.1,timeout=0.05,timeout_delay=0.01"
    with served(api_key=KEY, api_secret=SECRET, faults=faults, seed=5) as (_emu, url):
        env = env_with(url)
        debug = debug_process(game, env, "run", "--concurrency", "16", *SELECT)
        again = invoke(game, "run", "--json", *SELECT, env=env)
    assert debug.returncode in (0, 1), debug.stderr[-3000:]
    assert "Traceback" not in debug.stderr
    assert "DEBUG" in debug.stderr
    assert (game / "assets.lock").exists()
    assert_no_leak(game, debug.stdout, debug.stderr, again.output, emulator_logs.text)


def test_failed_jobs_and_expired_downloads_leak_nothing(
    game: Path, emulator_logs: pytest.LogCaptureFixture
) -> None:
    """Jobs that end in failure and signed URLs that expire: the API's words, no credential."""
    faults = "job_failure=0.3,expire=0.3"
    with served(api_key=KEY, api_secret=SECRET, faults=faults, seed=5) as (_emu, url):
        result = invoke(game, "run", "--json", *SELECT, env=env_with(url))
    assert result.exit_code in (0, 1), result.output
    assert_no_leak(game, result.output, emulator_logs.text)


def test_a_bad_manifest_leaks_nothing(game: Path) -> None:
    """A manifest that quotes the environment's names: the error shows the file, not the key."""
    (game / "manifests" / "bad.yaml").write_text("items:\n  - id: x\n    seed: SCENARIO_API_KEY\n")
    env = env_with("http://127.0.0.1:9/v1")
    outputs = [invoke(game, *command, env=env).output for command in COMMANDS[:7]]
    debug = debug_process(game, env, "run")
    assert debug.returncode == 2, debug.stderr
    assert_no_leak(game, *outputs, debug.stdout, debug.stderr)


@pytest.mark.skipif(not FULL, reason="backs off for ~10 s: full mode only")
def test_an_unreachable_api_leaks_nothing(game: Path) -> None:
    """Connection refused on every request (nothing listens): said plainly, no credential."""
    result = debug_process(game, env_with("http://127.0.0.1:9/v1"), "run", "tiles/lava")
    assert result.returncode == 1, result.stderr
    assert "could not send" in result.stderr
    assert_no_leak(game, result.stdout, result.stderr)


def test_ctrl_c_leaks_nothing(game: Path, emulator_logs: pytest.LogCaptureFixture) -> None:
    """SIGINT to a DEBUG-logging run with jobs in flight: exit 130, and no credential anywhere,
    including the intents and job ids kept in .pipeline/ for the next run."""
    with served(api_key=KEY, api_secret=SECRET, job_duration="fixed:2") as (emu, url):
        process = subprocess.Popen(
            [sys.executable, "-c", DEBUG_RUN, "-C", str(game), "run"],
            env=env_with(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            stop = time.monotonic() + 30
            while emu.stats.jobs_created < 3 and time.monotonic() < stop:
                time.sleep(0.01)
            process.send_signal(signal.SIGINT)
            time.sleep(0.2)
            process.send_signal(signal.SIGINT)  # the second Ctrl-C quits at once
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 130, stderr[-3000:]
    assert list((game / ".pipeline" / "jobs").glob("*.json"))  # intents kept for the rerun
    assert_no_leak(game, stdout, stderr, emulator_logs.text)
