"""The in-process httpx transport into an emulator (wraps `httpx.ASGITransport`).

Its one addition: the emulator's private fault signal becomes the network error a real client
would see (`drop` -> httpx.RemoteProtocolError, `timeout` -> httpx.ReadTimeout), after the server
has done the work. Over a real server the emulator fails the connection itself (middleware.py).
"""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.emulator.middleware import IN_PROCESS, InjectedFault


class EmulatorTransport(httpx.AsyncBaseTransport):
    """Sends requests straight to the emulator's ASGI app, in the caller's event loop."""

    def __init__(self, app: ASGIApp) -> None:
        async def marked(scope: Scope, receive: Receive, send: Send) -> None:
            scope[IN_PROCESS] = True
            await app(scope, receive, send)

        self._asgi = httpx.ASGITransport(app=marked)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer `request`, or raise the network error an injected fault stands for."""
        try:
            return await self._asgi.handle_async_request(request)
        except InjectedFault as fault:
            if fault.kind == "drop":
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response (emulated drop).",
                    request=request,
                ) from None
            raise httpx.ReadTimeout(
                "The read operation timed out (emulated timeout).", request=request
            ) from None

    async def aclose(self) -> None:
        """Nothing to release; kept for the transport protocol."""
        await self._asgi.aclose()
