"""A hostile or broken Scenario API: the emulator, with one behaviour replaced, served on loopback.

`HostileApp` wraps an emulator's ASGI app. Everything passes through unless the current `Mode`
replaces it:
  rewrite   {"<METHOD> <path prefix>": fn}: fn(parsed JSON) returns new JSON, or bytes sent
            verbatim as the 200 body (malformed JSON, wrong types, missing fields)
  files     an ASGI app answering every download (`/_emulator/files/...`) instead of the emulator
  aliases   asset ids the server made up (e.g. `../../x`) -> the real id they stand for; the
            asset routes answer for the alias with the real asset, its `id` set to the alias
`/elsewhere/...` plays another host (reach it as `localhost` while the API is `127.0.0.1`); the
headers of every request it gets are kept in `elsewhere_headers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import uvicorn
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.emulator import Emulator

Rewrite = Callable[[Any], Any]


@dataclass
class Mode:
    """What the server does wrong right now."""

    rewrite: dict[str, Rewrite] = field(default_factory=dict)
    files: ASGIApp | None = None
    aliases: dict[str, str] = field(default_factory=dict)


class HostileApp:
    """The emulator behind a layer that lies, per `mode`."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.mode = Mode()
        self.elsewhere_headers: list[dict[str, str]] = []
        self.elsewhere: ASGIApp = png_app(b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.emu.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/elsewhere/"):
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.elsewhere_headers.append(headers)
            await self.elsewhere(scope, receive, send)
            return
        if path.startswith("/_emulator/files/") and self.mode.files is not None:
            await self.mode.files(scope, receive, send)
            return
        alias = self._alias(path)
        if alias is not None:
            scope = dict(scope, path=f"/v1/assets/{self.mode.aliases[alias]}", raw_path=None)
            status, headers, body = await _capture(self.emu.app, scope, receive)
            doc = json.loads(body)
            if status == 200:
                doc["asset"]["id"] = alias
            await Response(json.dumps(doc).encode(), status)(scope, receive, send)
            return
        key = next(
            (k for k in self.mode.rewrite if f"{scope['method']} {path}".startswith(k)), None
        )
        if key is None:
            await self.emu.app(scope, receive, send)
            return
        status, headers, body = await _capture(self.emu.app, scope, receive)
        if status != 200:
            await Response(body, status, headers=headers)(scope, receive, send)
            return
        changed = self.mode.rewrite[key](json.loads(body))
        data = changed if isinstance(changed, bytes) else json.dumps(changed).encode()
        await Response(data, 200, media_type="application/json")(scope, receive, send)

    def _alias(self, path: str) -> str | None:
        """The made-up asset id a GET /v1/assets/<id> asks for, if it is one."""
        if not path.startswith("/v1/assets/"):
            return None
        asked = unquote(path.removeprefix("/v1/assets/"))
        return asked if asked in self.mode.aliases else None


async def _capture(
    app: ASGIApp, scope: Scope, receive: Receive
) -> tuple[int, dict[str, str], bytes]:
    """Run `app` and collect its whole answer."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, keep)
    headers = {
        k.decode(): v.decode()
        for k, v in start.get("headers", [])
        if k.lower() not in (b"content-length",)
    }
    return int(start.get("status", 500)), headers, b"".join(chunks)


# --- download answers ----------------------------------------------------------------------


def bytes_app(data: bytes, media_type: str = "image/png", **headers: str) -> ASGIApp:
    """Every download answers `data`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await Response(data, media_type=media_type, headers=headers)(scope, receive, send)

    return app


def png_app(data: bytes) -> ASGIApp:
    return bytes_app(data)


def redirect_app(location: str | Callable[[Scope], str], status: int = 302) -> ASGIApp:
    """Every download redirects to `location` (or what the function makes of the request)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        where = location(scope) if callable(location) else location
        await Response(b"", status, headers={"location": where})(scope, receive, send)

    return app


def stream_app(
    chunks: Callable[[], AsyncIterator[bytes]], *, content_length: int | None = None
) -> ASGIApp:
    """Every download streams what `chunks` yields (chunked unless a length is announced)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = {"content-length": str(content_length)} if content_length is not None else {}
        response = StreamingResponse(chunks(), media_type="image/png", headers=headers)
        with contextlib.suppress(Exception):  # h11 refuses a body that breaks its own length
            await response(scope, receive, send)

    return app


async def trickle(prefix: bytes = b"\x89PNG\r\n\x1a\n", every: float = 0.2) -> AsyncIterator[bytes]:
    """A body that never ends: one byte every `every` seconds, forever."""
    yield prefix
    while True:
        await asyncio.sleep(every)
        yield b"\x00"


def huge(total: int, piece: int = 1 << 16) -> Callable[[], AsyncIterator[bytes]]:
    """A body of `total` bytes, streamed without announcing its length."""

    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            yield b"\x00" * piece
            sent += piece

    return chunks


# --- serving --------------------------------------------------------------------------------


@contextlib.contextmanager
def serve_app(app: ASGIApp) -> Iterator[int]:
    """`app` under uvicorn on a free loopback port, in a thread; yields the port."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http="h11",
        lifespan="off",
        log_level="critical",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started:
            break
        threading.Event().wait(0.01)
    else:
        raise RuntimeError("the hostile server did not start")
    port: int = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        server.force_exit = True
        thread.join(10)
