"""Serves an emulator over HTTP with uvicorn, on loopback, until cancelled.

This is what `pipeline emulator --host --port` runs; tests use it to prove the wire format with the
official SDK and to see real connection drops. Nothing here knows about routes or state.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import uvicorn

from pipeline.emulator.app import Emulator


async def serve(
    emu: Emulator,
    host: str = "127.0.0.1",
    port: int = 8787,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run `emu` under uvicorn until cancelled; `on_ready` gets the base URL (`…/v1`) once bound.

    Port 0 picks a free port (read it from the URL given to `on_ready`). The socket is bound
    before uvicorn starts, so a taken port raises OSError here instead of exiting the process.
    """
    sock = listening_socket(host, port)
    family = sock.family
    try:
        bound_port = sock.getsockname()[1]
        config = uvicorn.Config(
            emu.app,
            http="h11",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        if on_ready is not None:
            shown = f"[{host}]" if family == socket.AF_INET6 else host
            on_ready(f"http://{shown}:{bound_port}/v1")
        try:
            await asyncio.wait({task})
            task.result()
        except asyncio.CancelledError:
            server.should_exit = True
            await asyncio.wait({task})
            raise
    finally:
        sock.close()


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (port 0: a free one).

    Made with IPPROTO_TCP, not the default 0: asyncio turns Nagle off (TCP_NODELAY) only on the
    connections of sockets that say they are TCP, and without that every keep-alive answer waits
    about 40 ms for the client's delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    except BaseException:
        sock.close()
        raise
    return sock
