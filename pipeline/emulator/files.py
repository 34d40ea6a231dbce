"""Signed, expiring download URLs and the routes under /_emulator (files and stats).

An asset's `url` points here, like a pre-signed object-store link: no API auth, but the signature
and the expiry are checked (403 otherwise). The `truncate` and `expire` faults act here too.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.emulator import render
from pipeline.emulator.middleware import fault_plan
from pipeline.emulator.records import AssetRecord
from pipeline.emulator.wire import ApiProblem, not_found

if TYPE_CHECKING:
    from pipeline.emulator.app import Emulator

FILES = "/_emulator/files/"


def signed_url(emu: Emulator, request: Request, asset: AssetRecord, fmt: str = "") -> str:
    """A download link for `asset` (re-encoded as `fmt` if given), valid for `url_ttl` seconds.

    With the `expire` fault on this request, the link has already expired.
    """
    path = f"{FILES}{asset.id}.{fmt or asset.format}"
    now = emu.clock()
    expires = math.floor(now) - 1 if "expire" in fault_plan(request.scope) else None
    if expires is not None:
        emu.stats.record_fault("expire")
    else:
        expires = math.ceil(now + emu.config.url_ttl)
    base = str(request.base_url).rstrip("/")
    return f"{base}{path}?expires={expires}&signature={_signature(emu, path, expires)}"


def _signature(emu: Emulator, path: str, expires: int) -> str:
    key = hashlib.sha256(f"url-key:{emu.seed}:{emu.config.api_secret}".encode()).digest()
    return hmac.new(key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()[:40]


def routes(emu: Emulator) -> list[Route]:
    """GET /_emulator/files/{name}, GET and DELETE /_emulator/stats."""

    async def download(request: Request) -> Response:
        path = request.url.path
        try:
            expires = int(request.query_params.get("expires", ""))
        except ValueError:
            raise _denied(
                "the URL is not signed", "fetch the asset again for a fresh url"
            ) from None
        given = request.query_params.get("signature", "")
        if not hmac.compare_digest(given, _signature(emu, path, expires)):
            raise _denied("the signature does not match", "use the url exactly as received")
        if expires < emu.clock() or "expire" in fault_plan(request.scope):
            if expires >= emu.clock():
                emu.stats.record_fault("expire")
            raise _denied("the URL has expired", "GET /assets/{id} again for a fresh url")
        name = request.path_params["name"]
        asset_id, _, fmt = name.rpartition(".")
        asset = emu.store.assets.get(asset_id)
        if asset is None or asset.deleted is not None:
            raise not_found("file", name)
        data = emu.store.content(asset)
        mime = asset.mime_type
        if fmt != asset.format:
            data, mime = render.convert(data, fmt)
        if "truncate" in fault_plan(request.scope):
            emu.stats.record_fault("truncate")
            data = data[: len(data) // 2]
        return Response(data, media_type=mime, headers={"cache-control": "private, max-age=60"})

    async def stats(request: Request) -> Response:
        if request.method == "DELETE":
            emu.stats.reset()
        emu.store.settle_all()
        return JSONResponse(emu.stats.as_dict())

    return [
        Route(FILES + "{name}", download, methods=["GET"]),
        Route("/_emulator/stats", stats, methods=["GET", "DELETE"]),
    ]


def _denied(reason: str, hint: str) -> ApiProblem:
    return ApiProblem(403, f"Access denied: {reason}", hint=hint)
