"""imagecheck: whole images pass with their size; any damage is caught without decoding."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.imagecheck import _ADAM7, ImageCheckError, check_image


def png(mode: str = "RGBA", size: tuple[int, int] = (37, 23), **save: object) -> bytes:
    """A patterned image (not flat, so it compresses like real art) in `mode`, as PNG bytes."""
    count = size[0] * size[1]
    if mode == "I;16":
        image = Image.frombytes(mode, size, bytes((n * 131) % 256 for n in range(2 * count)))
    else:
        base = Image.frombytes("RGBA", size, bytes((n * 7919) % 256 for n in range(4 * count)))
        image = base.convert(mode)
    out = io.BytesIO()
    image.save(out, "PNG", **save)
    return out.getvalue()


def check(tmp_path: Path, data: bytes) -> tuple[str, int, int]:
    path = tmp_path / "x.png"
    path.write_bytes(data)
    return check_image(path)


@pytest.mark.parametrize(
    ("mode", "save"),
    [
        ("RGBA", {}),
        ("RGB", {}),
        ("L", {}),
        ("P", {}),
        ("1", {}),
        ("I;16", {}),
        ("LA", {}),
        ("RGBA", {"optimize": True}),
        ("RGB", {"compress_level": 0}),
    ],
)
def test_whole_pngs_pass_with_their_size(
    tmp_path: Path, mode: str, save: dict[str, object]
) -> None:
    assert check(tmp_path, png(mode, **save)) == ("PNG", 37, 23)


def test_an_interlaced_png_passes(tmp_path: Path) -> None:
    # pillow writes no interlaced PNG: build one by hand (Adam7 passes of an 8-bit grey image)
    width, height = 5, 3
    raw = b""
    for x0, y0, dx, dy in _ADAM7:
        columns = len(range(x0, width, dx))
        for _ in range(y0, height, dy):
            if columns:
                raw += b"\x00" + bytes(range(columns))
    data = _assemble(struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 1), zlib.compress(raw))
    assert check(tmp_path, data) == ("PNG", 5, 3)
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # pillow agrees it is whole


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _assemble(ihdr: bytes, idat: bytes) -> bytes:
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def test_a_jpeg_is_decoded_whole(tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("RGB", (16, 8), "red").save(out, "JPEG")
    assert check(tmp_path, out.getvalue()) == ("JPEG", 16, 8)


@given(cut=st.integers(min_value=1, max_value=400))
@settings(max_examples=80, deadline=None)
def test_any_truncation_is_caught(tmp_path_factory: pytest.TempPathFactory, cut: int) -> None:
    data = png()
    cut = min(cut, len(data) - 1)
    with pytest.raises(ImageCheckError):
        check(tmp_path_factory.mktemp("t"), data[: len(data) - cut])


@given(position=st.integers(min_value=8, max_value=10_000), flip=st.integers(1, 255))
@settings(max_examples=80, deadline=None)
def test_any_flipped_byte_is_caught(
    tmp_path_factory: pytest.TempPathFactory, position: int, flip: int
) -> None:
    data = bytearray(png())
    data[position % len(data)] ^= flip
    if position % len(data) < 8:
        return
    with pytest.raises(ImageCheckError):
        check(tmp_path_factory.mktemp("f"), bytes(data))


def test_pixel_data_shorter_or_longer_than_the_header_says(tmp_path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)  # 4 rows of 1 + 4 bytes
    with pytest.raises(ImageCheckError, match="12 of 20 bytes"):
        check(tmp_path, _assemble(ihdr, zlib.compress(b"\x00" * 12)))
    with pytest.raises(ImageCheckError, match="larger than its size"):
        check(tmp_path, _assemble(ihdr, zlib.compress(b"\x00" * 5_000_000)))


def test_a_decompression_bomb_is_stopped_early(tmp_path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 2 bytes of pixel data announced
    bomb = zlib.compress(b"\x00" * 200_000_000, 9)  # 200 MB inflated, ~200 KB on disk
    with pytest.raises(ImageCheckError, match="larger than its size"):
        check(tmp_path, _assemble(ihdr, bomb))


def test_absurd_dimensions_are_refused_before_any_pixel(tmp_path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 6, 0, 0, 0)
    with pytest.raises(ImageCheckError, match="too many pixels"):
        check(tmp_path, _assemble(ihdr, b""))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        b"\x89PNG\r\n\x1a\n",
        b"<html>not found</html>",
        b"\x89PNG\r\n\x1a\n" + b"\0" * 8,
    ],
)
def test_not_an_image(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(ImageCheckError, match="not a readable image"):
        check(tmp_path, data)
