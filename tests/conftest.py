"""Shared fixtures: credentials kept out, and a throwaway game repo under tmp_path."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pipeline.backend
from pipeline.emulator import Emulator, EmulatorConfig


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a real account, whatever the developer's shell has."""
    for name in (
        "SCENARIO_API_KEY",
        "SCENARIO_API_SECRET",
        "SCENARIO_SDK_API_KEY",
        "SCENARIO_SDK_API_SECRET",
        "SCENARIO_BASE_URL",
        "NO_COLOR",
        "GITHUB_STEP_SUMMARY",
    ):
        monkeypatch.delenv(name, raising=False)


WriteFile = Callable[[str, str], Path]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty game repo."""
    (tmp_path / "manifests").mkdir()
    return tmp_path


@pytest.fixture
def write(repo: Path) -> WriteFile:
    """write("manifests/x.yaml", text): a file in the repo, dedented."""

    def _write(name: str, text: str) -> Path:
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return _write


MakeLocal = Callable[..., Emulator]


@pytest.fixture
def make_local(monkeypatch: pytest.MonkeyPatch) -> MakeLocal:
    """make_local(**config): the emulator the CLI's local backend will use (fast jobs)."""
    from tests.e2e import FAST

    def make(**config: Any) -> Emulator:
        emu = Emulator(EmulatorConfig(**{**FAST, **config}))
        monkeypatch.setattr(pipeline.backend, "local_emulator", lambda: emu)
        return emu

    return make
