"""Placeholder text stays inside the image, however narrow the image or long the words."""

from __future__ import annotations

from PIL import Image, ImageDraw

from pipeline.emulator import render


def test_every_wrapped_line_fits_the_room() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    font = render._font(12)
    line = "a seamless-grass-texture-with-no-spaces-at-all " * 3 + "#1234567890/0"
    lines = render._wrap(draw, font, line, room=80)
    assert len(lines) > 3
    assert all(draw.textlength(part, font=font) <= 80 for part in lines)
    assert "".join(lines).replace(" ", "") == line.replace(" ", "")


def test_a_narrow_placeholder_still_renders_at_its_size() -> None:
    data = render.placeholder(
        prompt="x" * 200, seed=123456789, output_index=0, width=64, height=256
    )
    facts = render.inspect(data)
    assert (facts.width, facts.height) == (64, 256)
