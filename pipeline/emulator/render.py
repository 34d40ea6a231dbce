"""Placeholder art: deterministic PNGs that stand in for generated images until real art exists.

Owns the pixels only: every function takes plain values and returns encoded bytes, so the same
request gives the same bytes. It knows nothing of jobs, assets or HTTP; state.py decides when
to render.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

Colour = tuple[int, int, int]
_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_TARGETS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


class NotAnImage(ValueError):
    """The bytes given are not an image pillow can decode."""


@dataclass(frozen=True)
class ImageFacts:
    """What the API reports about an image file."""

    format: str  # lower case: png, jpeg, webp, gif
    mime_type: str
    width: int
    height: int
    has_alpha: bool


def inspect(data: bytes) -> ImageFacts:
    """Decode `data` far enough to know its format and size; NotAnImage if it is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            if fmt not in _FORMATS:
                raise NotAnImage(f"unsupported image format {fmt or 'unknown'}")
            alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            return ImageFacts(fmt.lower(), _FORMATS[fmt], img.width, img.height, alpha)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise NotAnImage(str(exc) or "not an image") from exc


def placeholder(
    *,
    prompt: str,
    seed: int,
    output_index: int,
    width: int,
    height: int,
    caption: str = "",
    references: Sequence[bytes] = (),
) -> bytes:
    """A framed gradient with a few shapes and the prompt written on it, as PNG bytes.

    Palette and composition come from hash(prompt, seed, output_index), so they are stable across
    runs and machines with the same pillow. `references` (input images) are shown as thumbnails.
    """
    digest = hashlib.sha256(f"{prompt}\x00{seed}\x00{output_index}".encode()).digest()
    hue = digest[0] / 255
    top, bottom = _hsv(hue, 0.55, 0.95), _hsv((hue + 0.12) % 1, 0.75, 0.45)
    img = _gradient(width, height, top, bottom, vertical=digest[1] % 2 == 0)
    draw = ImageDraw.Draw(img)
    for n in range(3 + digest[2] % 3):
        _shape(draw, digest[3 + 4 * n : 7 + 4 * n], width, height, (hue + 0.33 + n * 0.17) % 1)
    _paste_references(img, references)
    unit = max(1, min(width, height))
    border = max(2, unit // 64)
    frame = _hsv((hue + 0.5) % 1, 0.9, 0.3)
    draw.rectangle((0, 0, width - 1, height - 1), outline=frame, width=border)
    # Line breaks become spaces: pillow cannot measure multi-line text (a YAML block prompt).
    lines = [" ".join(prompt.splitlines()) or "(no prompt)"]
    label = f"{width}x{height}" + (f"  {caption}" if caption else "") + f"  #{seed}/{output_index}"
    _write(draw, lines, label, width, height, border)
    return _png(img)


def remove_background(data: bytes) -> bytes:
    """The input with a transparent background and an opaque subject (a centred ellipse), as PNG."""
    with Image.open(io.BytesIO(data)) as src:
        img = src.convert("RGBA")
    mask = Image.new("L", img.size, 0)
    w, h = img.size
    ImageDraw.Draw(mask).ellipse((w * 0.15, h * 0.1, w * 0.85, h * 0.9), fill=255)
    img.putalpha(mask)
    return _png(img)


def upscale(data: bytes, scale: int) -> bytes:
    """The input resized by `scale` on both sides, as PNG."""
    with Image.open(io.BytesIO(data)) as src:
        img = src.convert("RGBA" if src.mode in ("RGBA", "LA", "PA", "P") else "RGB")
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.BICUBIC)
    return _png(img)


def convert(data: bytes, target: str) -> tuple[bytes, str]:
    """Re-encode an image as `target` (png, jpeg, jpg, webp); returns the bytes and MIME type."""
    fmt = _TARGETS[target]
    with Image.open(io.BytesIO(data)) as src:
        img = src.convert("RGB") if fmt == "JPEG" else src.convert("RGBA")
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue(), _FORMATS[fmt]


def convertible(target: str) -> bool:
    """True when `convert` can produce `target`."""
    return target in _TARGETS


def _png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # Level 1: about three times faster than the default, and placeholders are thrown away anyway.
    img.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _hsv(h: float, s: float, v: float) -> Colour:
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def _gradient(width: int, height: int, a: Colour, b: Colour, *, vertical: bool) -> Image.Image:
    ramp = Image.linear_gradient("L")  # 256x256, black at the top
    if not vertical:
        ramp = ramp.transpose(Image.Transpose.ROTATE_90)
    ramp = ramp.resize((width, height), Image.Resampling.BILINEAR)
    return ImageOps.colorize(ramp, a, b)


def _shape(draw: ImageDraw.ImageDraw, seed: bytes, width: int, height: int, hue: float) -> None:
    kind, x, y, r = seed[0] % 3, seed[1] / 255, seed[2] / 255, 0.08 + seed[3] / 255 * 0.22
    cx, cy, rad = x * width, y * height, r * min(width, height)
    box = (cx - rad, cy - rad, cx + rad, cy + rad)
    colour = _hsv(hue, 0.6, 0.85)
    if kind == 0:
        draw.ellipse(box, fill=colour)
    elif kind == 1:
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(cx, cy - rad), (cx + rad, cy + rad), (cx - rad, cy + rad)], fill=colour)


def _paste_references(img: Image.Image, references: Sequence[bytes]) -> None:
    if not references:
        return
    side = max(8, min(img.width, img.height) // 4)
    for n, data in enumerate(references[:4]):
        with Image.open(io.BytesIO(data)) as src:
            thumb = src.convert("RGB")
        thumb.thumbnail((side, side))
        img.paste(thumb, (img.width - (n + 1) * (side + 4), 4))


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _write(
    draw: ImageDraw.ImageDraw, lines: list[str], label: str, width: int, height: int, margin: int
) -> None:
    size = max(8, min(width, height) // 20)
    font = _font(size)
    room = width - 4 * margin
    text = [part for line in lines for part in _wrap(draw, font, line, room)][:6]
    label_lines = _wrap(draw, font, label, room, separator="  ")
    step = int(size * 1.25)
    block = step * (len(text) + len(label_lines)) + size // 2
    top = max(margin, height - block - 2 * margin)
    draw.rectangle((margin, top, width - margin - 1, height - margin - 1), fill=(20, 20, 24))
    for n, line in enumerate(text + label_lines):
        fill = (250, 250, 250) if n < len(text) else (255, 210, 90)
        draw.text((2 * margin, top + size // 4 + n * step), line, font=font, fill=fill)


def _wrap(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    line: str,
    room: float,
    separator: str = " ",
) -> list[str]:
    """Greedy word wrap measured with the font itself, so no line runs past the image's edge.

    A single word wider than the room is cut at the character that no longer fits.
    """
    out: list[str] = []
    current = ""
    for word in line.split(separator):
        candidate = f"{current}{separator}{word}" if current else word
        if draw.textlength(candidate, font=font) <= room:
            current = candidate
            continue
        if current:
            out.append(current)
        while len(word) > 1 and draw.textlength(word, font=font) > room:
            cut = len(word) - 1
            while cut > 1 and draw.textlength(word[:cut], font=font) > room:
                cut -= 1
            out.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        out.append(current)
    return out
