"""The ASGI layer in front of the routes: counting, Basic auth, rate limit and fault injection.

Faults act here, around the routes: errors before any work, `slow` before, `drop` and `timeout`
after the work is done. In process (transport.py) they become a private `InjectedFault` exception;
over a real server, `drop` sends half a response and hangs up, `timeout` answers very late.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import math
from asyncio import FIRST_COMPLETED
from collections.abc import Sequence
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.emulator.faults import NO_FAULTS, FaultPlan, format_retry_after, group_of
from pipeline.emulator.wire import ApiProblem

if TYPE_CHECKING:
    from pipeline.emulator.app import Emulator

IN_PROCESS = "pipeline.emulator.in_process"  # scope key set by transport.py
PLAN = "pipeline.emulator.faults"  # scope key: the FaultPlan of this request
STATS_PATH = "/_emulator/stats"
_REASONS = {
    500: "Internal server error",
    503: "Service unavailable",
    429: "Too many requests: slow down",
}


class InjectedFault(Exception):
    """Raised to the in-process transport: answer this request with a network failure."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"emulated {kind}")
        self.kind = kind


def fault_plan(scope: Scope) -> FaultPlan:
    """The faults decided for a request (handlers act on truncate, expire, job_failure, stuck)."""
    plan = scope.get(PLAN, NO_FAULTS)
    assert isinstance(plan, FaultPlan)
    return plan


class Gateway:
    """Outermost ASGI app of the emulator; wraps the Starlette routes."""

    def __init__(self, app: ASGIApp, emu: Emulator, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.emu = emu
        self.routes = routes
        self.dice = emu.dice
        self._tokens = 0.0
        self._refilled: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == STATS_PATH:
            await self.app(scope, receive, send)
            return
        endpoint = f"{scope['method']} {self._template(scope)}"
        sent: list[int] = []

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent.append(int(message["status"]))
            await send(message)

        try:
            await self._gate(scope, receive, counting_send)
        finally:
            self.emu.stats.record_request(endpoint, sent[0] if sent else None)

    async def _gate(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith("/v1/"):
            problem = self._authenticate(scope) or self._throttle()
            if problem is not None:
                await problem.response()(scope, receive, send)
                return
        plan = self.dice.roll(group_of(scope["path"]))
        scope[PLAN] = plan
        stats = self.emu.stats
        faults = self.emu.faults
        status = next((s for s in (500, 503, 429) if f"error_{s}" in plan), None)
        if status is not None:
            stats.record_fault(f"error_{status}")
            headers = {}
            if status != 500 and faults.retry_after is not None:
                headers["retry-after"] = format_retry_after(faults.retry_after)
            problem = ApiProblem(status, f"{_REASONS[status]} (emulated fault)", headers=headers)
            await problem.response()(scope, receive, send)
            return
        if "slow" in plan:
            stats.record_fault("slow")
            await self.emu.sleep(faults.slow_delay)
        kind = "drop" if "drop" in plan else "timeout" if "timeout" in plan else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        stats.record_fault(kind)
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        await self.app(scope, receive, keep)  # the work is done, whatever the client sees
        if scope.get(IN_PROCESS):
            raise InjectedFault(kind)
        if kind == "timeout":
            if await self._client_left_within(faults.timeout_delay, receive):
                return  # nobody is waiting any more
            for message in messages:
                await send(message)
            return
        body = b"".join(m.get("body", b"") for m in messages[1:])
        await send(messages[0])
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        # Returning with the body incomplete makes the server close the connection mid-response.

    async def _client_left_within(self, seconds: float, receive: Receive) -> bool:
        """Wait `seconds` (injected sleep); True if the client hung up first."""

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        waiting = asyncio.ensure_future(self.emu.sleep(seconds))
        hangup = asyncio.ensure_future(disconnected())
        done, pending = await asyncio.wait({waiting, hangup}, return_when=FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return hangup in done

    def _template(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return str(getattr(route, "path", scope["path"]))
        return "<unmatched>"

    def _authenticate(self, scope: Scope) -> ApiProblem | None:
        header = _header(scope, b"authorization")
        scheme, _, encoded = header.partition(" ")
        config = self.emu.config
        if scheme.lower() == "basic":
            try:
                key, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                key, sep, secret = "", "", ""
            if (
                sep
                and hmac.compare_digest(key.encode(), config.api_key.encode())
                and hmac.compare_digest(secret.encode(), config.api_secret.encode())
            ):
                return None
        return ApiProblem(
            401,
            "Unauthorized: missing or invalid API key/secret",
            hint="send Authorization: Basic base64(key:secret) with the emulator's credentials "
            f"(key {config.api_key!r})",
        )

    def _throttle(self) -> ApiProblem | None:
        rate = self.emu.config.rate_limit
        if rate is None:
            return None
        now = self.emu.clock()
        burst = max(1.0, rate)
        if self._refilled is None:
            self._tokens = burst
        else:
            self._tokens = min(burst, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        wait = max(1, math.ceil((1 - self._tokens) / rate))
        retry_after = self.emu.faults.retry_after
        return ApiProblem(
            429,
            f"Too many requests: the limit is {rate:g} requests per second",
            headers={
                "retry-after": format_retry_after(wait if retry_after is None else retry_after)
            },
        )


def _header(scope: Scope, name: bytes) -> str:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""
