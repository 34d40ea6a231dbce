"""Helpers for the emulator tests: a fake clock, an in-process client, small images, shortcuts."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import httpx
from PIL import Image

from pipeline.emulator import Emulator

MakeEmulator = Callable[..., Emulator]
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    """Time that moves only when told to; `sleep` advances it and records the delays asked for."""

    def __init__(self, start: float = START) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client_for(
    emu: Emulator, *, auth: tuple[str, str] | None = ("local", "local")
) -> httpx.AsyncClient:
    """An httpx client wired to `emu` in process."""
    return httpx.AsyncClient(transport=emu.transport(), base_url=emu.base_url, auth=auth)


def png(width: int = 64, height: int = 48, colour: tuple[int, ...] = (200, 60, 40)) -> bytes:
    """A small PNG (RGBA when the colour has four channels)."""
    buffer = io.BytesIO()
    Image.new("RGBA" if len(colour) == 4 else "RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


FLUX = "/generate/custom/model_bfl-flux-2-dev"


async def generate(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    """Submit a FLUX job (512x512 unless told) and return the job JSON."""
    body.setdefault("prompt", "iron sword icon")
    body.setdefault("width", 512)
    body.setdefault("height", 512)
    response = await client.post(FLUX, json=body)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()["job"]
    return job


async def finish(client: httpx.AsyncClient, clock: FakeClock, job_id: str) -> dict[str, Any]:
    """Let a job run to its end and return it."""
    clock.advance(3600)
    response = await client.get(f"/jobs/{job_id}")
    assert response.status_code == 200
    job: dict[str, Any] = response.json()["job"]
    return job


async def upload(client: httpx.AsyncClient, data: bytes, name: str = "ref.png") -> str:
    """POST /assets and return the new asset id."""
    response = await client.post(
        "/assets", json={"name": name, "image": base64.b64encode(data).decode()}
    )
    assert response.status_code == 200, response.text
    asset_id: str = response.json()["asset"]["id"]
    return asset_id
