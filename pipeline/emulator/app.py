"""`Emulator`: one emulated Scenario account, its Starlette app, and the in-process transport.

Assembles the pieces (store, stats, faults, routes) and holds the injected clock and sleep, so
tests drive time by hand. The routes themselves live in the api_*.py modules and files.py.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from pipeline.emulator import api_assets, api_generate, api_models, files
from pipeline.emulator.config import EmulatorConfig, parse_duration
from pipeline.emulator.faults import FaultDice, Faults
from pipeline.emulator.middleware import Gateway
from pipeline.emulator.state import Store
from pipeline.emulator.stats import Stats
from pipeline.emulator.transport import EmulatorTransport
from pipeline.emulator.wire import ApiProblem

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def wall_clock() -> Clock:
    """Unix time that never jumps: the wall clock at start, advanced by time.monotonic()."""
    wall, mono = time.time(), time.monotonic()
    return lambda: wall + (time.monotonic() - mono)


class Emulator:
    """The Scenario API, emulated: `app` (ASGI), `transport()` (httpx, in process), `stats`.

    `clock` returns Unix-epoch seconds (the API's dates come from it) and `sleep` waits; inject
    fakes in tests so nothing really sleeps. Jobs advance only when looked at, from the clock.
    """

    base_url = "http://emulator.local/v1"

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.seed = self.config.seed if self.config.seed is not None else secrets.randbits(31)
        self.clock: Clock = clock or wall_clock()
        self.sleep: Sleep = sleep or asyncio.sleep
        self.faults = Faults.coerce(self.config.faults)
        self.dice = FaultDice(self.faults, self.seed)  # the n-th request of a group: same draw
        self.job_duration = parse_duration(self.config.job_duration)
        self.training_duration = parse_duration(self.config.training_duration)
        self.stats = Stats(self.clock)
        self.store = Store(seed=self.seed, clock=self.clock, state_dir=self.config.state_dir)
        routes = [
            *api_generate.routes(self),
            *api_assets.routes(self),
            *api_models.routes(self),
            *files.routes(self),
        ]
        self.app = Starlette(
            routes=routes,
            middleware=[Middleware(Gateway, emu=self, routes=routes)],
            exception_handlers={ApiProblem: _problem, HTTPException: _http_error},
        )

    def set_faults(self, faults: Faults | str) -> None:
        """Change the faults of the requests from now on (e.g. a storm that ends)."""
        self.faults = Faults.coerce(faults)
        self.dice.faults = self.faults

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport into this emulator, in process; use with `base_url`."""
        return EmulatorTransport(self.app)


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblem)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    reason = "Not found" if exc.status_code == 404 else str(exc.detail)
    hint = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else ""
    return ApiProblem(
        exc.status_code, reason, hint=hint, headers=dict(exc.headers or {})
    ).response()
