"""What a real terminal shows: the CLI as a process on a pseudo-terminal (stdout and stderr a TTY).

A developer's terminal gets colour and the live panel; NO_COLOR, CI or a pipe get plain lines with
no escape sequence at all; `--json` is pure JSON on stdout whatever stderr is.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.e2e import copy_examples

_ESC = "\x1b"


def on_a_terminal(
    root: Path, *args: str, json_out: bool = False, **env: str
) -> tuple[int, str, str]:
    """Run `pipeline -C root args` on a pty: its exit code, what the terminal showed, and stdout
    when `json_out` sends stdout to a pipe instead (stderr stays on the terminal)."""
    leader, follower = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CI", "TERM")}
    environ.update(TERM="xterm-256color", COLUMNS="100", LINES="40", **env)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "-C", str(root), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if json_out else follower,
        stderr=follower,
        env=environ,
    )
    os.close(follower)
    shown: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(leader, shown), daemon=True)
    reader.start()
    stdout = ""
    if process.stdout is not None:
        with process.stdout:
            stdout = process.stdout.read().decode()
    code = process.wait(120)
    reader.join(30)
    os.close(leader)
    return code, b"".join(shown).decode(errors="replace"), stdout


def _drain(leader: int, into: list[bytes]) -> None:
    """Read the terminal until the child closes it (so the child never blocks on a full pty)."""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            return
        if not data:
            return
        into.append(data)


@pytest.fixture(scope="module")
def game(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_examples(tmp_path_factory.mktemp("terminal"))


def test_a_terminal_gets_colour_and_the_live_panel(game: Path) -> None:
    code, text, _ = on_a_terminal(game, "run", "--force", "tiles")
    assert code == 0, text
    assert _ESC + "[" in text  # colour and cursor movement
    assert "elapsed" in text  # the live panel's bar


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"CI": "true", "NO_COLOR": "1"}])
def test_no_color_and_ci_get_plain_lines(game: Path, env: dict[str, str]) -> None:
    code, text, _ = on_a_terminal(game, "run", "--force", "tiles", **env)
    assert code == 0, text
    assert _ESC not in text
    assert "] generated tiles/lava" in text  # one plain line per event
    assert "elapsed" not in text


def test_ci_alone_gets_no_live_panel(game: Path) -> None:
    code, text, _ = on_a_terminal(game, "plan", "tiles", CI="true")
    assert code == 0, text
    code, text, _ = on_a_terminal(game, "run", "--force", "tiles", CI="true")
    assert code == 0, text
    assert "elapsed" not in text and "] generated tiles/lava" in text


def test_json_stays_pure_on_stdout_while_stderr_is_a_terminal(game: Path) -> None:
    code, text, stdout = on_a_terminal(game, "run", "--force", "--json", "tiles", json_out=True)
    assert code == 0, text
    assert json.loads(stdout)["counts"]["generated"] == 5
    assert "elapsed" in text  # the live panel went to the terminal, not into the JSON
