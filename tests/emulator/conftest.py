"""Fixtures for the emulator tests: a fake clock and sleep, and an in-process client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pipeline.emulator import Emulator, EmulatorConfig
from tests.emulator.support import FakeClock, MakeEmulator, client_for


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_emulator(clock: FakeClock) -> MakeEmulator:
    """make_emulator(**config): an Emulator on the fake clock (seed 7 and 2 s jobs by default)."""

    def make(**config: Any) -> Emulator:
        config.setdefault("seed", 7)
        config.setdefault("job_duration", 2.0)
        return Emulator(EmulatorConfig(**config), clock=clock, sleep=clock.sleep)

    return make


@pytest.fixture
def emu(make_emulator: MakeEmulator) -> Emulator:
    return make_emulator()


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(emu) as c:
        yield c
