"""Check a downloaded image in constant memory: every byte accounted for, nothing decoded whole.

A PNG is read chunk by chunk: the signature, every chunk's CRC, IHDR's size and pixel format, the
IDAT stream inflated in bounded pieces (so a decompression bomb is stopped as soon as it inflates
past what IHDR announces) to exactly the number of bytes IHDR implies, zlib's own checksum, and
IEND at the end. That is what decoding would catch, short of filter arithmetic, and it keeps the
collector's memory flat whatever the image's size (see BENCHMARKS.md, memory). Other formats
(JPEG, WebP) are decoded whole by pillow.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

from PIL import Image

__all__ = ["ImageCheckError", "check_image"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}
# Adam7 passes: (x start, y start, x step, y step)
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_PIECE = 1 << 16  # bytes read at a time
_INFLATE_STEP = 1 << 18  # most bytes inflated at a time
_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


class ImageCheckError(Exception):
    """The file is not a whole, readable image."""


def check_image(path: Path) -> tuple[str, int, int]:
    """(pillow format name, width, height) of a complete image; ImageCheckError otherwise."""
    with path.open("rb") as handle:
        if handle.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE:
            width, height = _check_png(handle)
            return "PNG", width, height
    return _decode_whole(path)


def _decode_whole(path: Path) -> tuple[str, int, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image_format, (width, height) = image.format or "", image.size
                image.load()
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise ImageCheckError(f"not a readable image ({exc})") from None
    return image_format, width, height


def _check_png(handle: BinaryIO) -> tuple[int, int]:
    header: tuple[int, int, int] | None = None  # width, height, expected inflated size
    inflater = zlib.decompressobj()
    inflated = 0
    while True:
        head = handle.read(8)
        if len(head) < 8:
            raise ImageCheckError("not a readable image (PNG ends before IEND: truncated)")
        length, kind = struct.unpack(">I4s", head)
        if length > 0x7FFFFFFF:
            raise ImageCheckError(f"not a readable image (PNG chunk of {length} bytes)")
        crc = zlib.crc32(kind)
        first = b""  # the chunk's data, kept only for small chunks that are parsed
        remaining = length
        while remaining:
            piece = handle.read(min(remaining, _PIECE))
            if not piece:
                raise ImageCheckError("not a readable image (PNG chunk cut short: truncated)")
            remaining -= len(piece)
            crc = zlib.crc32(piece, crc)
            if kind == b"IDAT":
                if header is None:
                    raise ImageCheckError("not a readable image (PNG data before its header)")
                inflated += _inflate(inflater, piece, header[2] - inflated)
            elif kind == b"IHDR":
                first += piece
        stored = handle.read(4)
        if len(stored) < 4 or struct.unpack(">I", stored)[0] != crc & 0xFFFFFFFF:
            raise ImageCheckError(f"not a readable image (PNG {kind!r} chunk fails its CRC)")
        if kind == b"IHDR":
            header = _read_header(first)
        elif header is None:
            raise ImageCheckError("not a readable image (PNG does not start with IHDR)")
        elif kind == b"IEND":
            break
    if not inflater.eof or inflated != header[2]:
        raise ImageCheckError(
            f"not a readable image (PNG pixel data has {inflated} of {header[2]} bytes)"
        )
    return header[0], header[1]


def _inflate(inflater: zlib._Decompress, data: bytes, room: int) -> int:
    """Inflate `data` in bounded steps; the bytes it gave, never more than `room` (+ one step)."""
    total = 0
    try:
        while data:
            out = inflater.decompress(data, _INFLATE_STEP)
            total += len(out)
            if total > room:
                raise ImageCheckError("not a readable image (PNG pixel data larger than its size)")
            data = inflater.unconsumed_tail
            if inflater.eof:
                break
    except zlib.error as exc:
        raise ImageCheckError(f"not a readable image (PNG pixel data corrupt: {exc})") from None
    return total


def _read_header(data: bytes) -> tuple[int, int, int]:
    if len(data) != 13:
        raise ImageCheckError("not a readable image (PNG header of the wrong length)")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data)
    valid = colour in _CHANNELS and depth in _DEPTHS[colour] and interlace in (0, 1)
    if not (width and height and valid):
        raise ImageCheckError("not a readable image (PNG header is invalid)")
    if width * height > 2 * _MAX_PIXELS:
        raise ImageCheckError(f"not a readable image ({width}x{height}: too many pixels)")
    bits = _CHANNELS[colour] * depth
    if interlace == 0:
        return width, height, height * (1 + (width * bits + 7) // 8)
    size = 0
    for x0, y0, dx, dy in _ADAM7:
        columns, rows = max(0, -(-(width - x0) // dx)), max(0, -(-(height - y0) // dy))
        if columns and rows:
            size += rows * (1 + (columns * bits + 7) // 8)
    return width, height, size
