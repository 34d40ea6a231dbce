"""The `local` backend: the Scenario API emulated in process or on loopback, with placeholder art.

    emu = Emulator(EmulatorConfig(seed=1, faults="drop=0.1"), clock=fake_clock, sleep=fake_sleep)
    async with httpx.AsyncClient(transport=emu.transport(), base_url=emu.base_url) as client: ...
    await serve(emu, "127.0.0.1", 8787)          # pipeline/emulator/server.py, over HTTP
    emu.stats.as_dict()                          # also GET /_emulator/stats

The wire contract is shared/scenario-api.md. Modules: app (Emulator), api_* (routes), state (store),
records (jobs over time), catalogue + schema (models, validation), render (pixels), faults +
middleware + transport (failure injection), stats (counters), files (signed URLs).
"""

from pipeline.emulator.app import Emulator
from pipeline.emulator.config import Duration, EmulatorConfig, parse_duration
from pipeline.emulator.faults import Faults
from pipeline.emulator.stats import Stats

__all__ = ["Duration", "Emulator", "EmulatorConfig", "Faults", "Stats", "parse_duration"]
