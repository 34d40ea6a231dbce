"""Placeholder art: deterministic, exactly sized, alpha after background removal, upscales."""

from __future__ import annotations

import io

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.emulator import render
from tests.emulator.support import (
    FakeClock,
    MakeEmulator,
    client_for,
    finish,
    generate,
    png,
    upload,
)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def art(prompt: str = "iron sword", seed: int = 1, index: int = 0, size: int = 64) -> bytes:
    return render.placeholder(prompt=prompt, seed=seed, output_index=index, width=size, height=size)


def test_same_request_gives_the_same_bytes() -> None:
    assert art() == art()


@pytest.mark.parametrize("change", [{"prompt": "wooden shield"}, {"seed": 2}, {"index": 1}])
def test_prompt_seed_and_output_index_change_the_picture(change: dict[str, object]) -> None:
    assert art(**change) != art()  # type: ignore[arg-type]


@settings(max_examples=15, deadline=None)
@given(width=st.integers(16, 700), height=st.integers(16, 700), prompt=st.text(max_size=300))
def test_art_has_exactly_the_requested_size(width: int, height: int, prompt: str) -> None:
    data = render.placeholder(prompt=prompt, seed=3, output_index=0, width=width, height=height)
    image = decode(data)
    assert image.format == "PNG"
    assert image.size == (width, height)


def test_the_frame_is_visible_at_the_edges() -> None:
    image = decode(art(size=128)).convert("RGB")
    edge = image.getpixel((0, 64))
    assert edge == image.getpixel((127, 64)) == image.getpixel((64, 0))


def test_background_removal_keeps_an_opaque_subject_on_a_transparent_ground() -> None:
    out = decode(render.remove_background(png(100, 80)))
    assert out.mode == "RGBA"
    assert out.size == (100, 80)
    assert out.getpixel((0, 0))[3] == 0  # type: ignore[index]
    assert out.getpixel((50, 40))[3] == 255  # type: ignore[index]


@pytest.mark.parametrize("scale", [2, 4])
def test_upscale_multiplies_both_sides(scale: int) -> None:
    assert decode(render.upscale(png(30, 20), scale)).size == (30 * scale, 20 * scale)


def test_inspect_refuses_what_is_not_an_image() -> None:
    with pytest.raises(render.NotAnImage):
        render.inspect(b"GIF89a but not really")


async def test_generated_file_is_the_deterministic_art_of_its_request(
    make_emulator: MakeEmulator, clock: FakeClock
) -> None:
    files = []
    for _ in range(2):
        emu = make_emulator(seed=None)
        async with client_for(emu) as client:
            job = await generate(client, prompt="golden key", seed=5, width=320, height=256)
            done = await finish(client, clock, job["jobId"])
            asset = (await client.get(f"/assets/{done['metadata']['assetIds'][0]}")).json()
            files.append((await client.get(asset["asset"]["url"])).content)
    assert files[0] == files[1]
    assert decode(files[0]).size == (320, 256)
    assert len(files[0]) == asset["asset"]["properties"]["size"]


async def run_model(
    client: httpx.AsyncClient, clock: FakeClock, model: str, body: dict[str, object]
) -> Image.Image:
    response = await client.post(f"/generate/custom/{model}", json=body)
    assert response.status_code == 200, response.text
    done = await finish(client, clock, response.json()["job"]["jobId"])
    asset = (await client.get(f"/assets/{done['metadata']['assetIds'][0]}")).json()["asset"]
    image = decode((await client.get(asset["url"])).content)
    assert image.size == (asset["properties"]["width"], asset["properties"]["height"])
    return image


async def test_background_remover_outputs_a_png_with_alpha(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    source = await upload(client, png(90, 60))
    out = await run_model(client, clock, "photoroom-background-remover", {"image": source})
    assert out.format == "PNG"
    assert out.mode == "RGBA"
    assert out.size == (90, 60)
    assert out.getpixel((0, 0))[3] == 0  # type: ignore[index]


async def test_upscaler_scales_its_input(client: httpx.AsyncClient, clock: FakeClock) -> None:
    source = await upload(client, png(50, 40))
    out = await run_model(client, clock, "model_upscale-v3", {"image": source, "scale": 4})
    assert out.size == (200, 160)


async def test_image_editing_follows_the_reference_or_the_aspect_ratio(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    source = await upload(client, png(300, 200))
    model = "google-gemini-3-1-flash"
    same = await run_model(client, clock, model, {"prompt": "red", "referenceImages": [source]})
    assert same.size == (300, 200)
    wide = await run_model(client, clock, model, {"prompt": "red", "aspectRatio": "16:9"})
    assert wide.size == (1344, 768)
