"""The glyph segment against Pillow's own raster, and text compositing."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFont

from simulacra.apps import font


def pillow_cell(ch: str) -> np.ndarray:
    """Rasterize ``ch`` straight from Pillow, quantized to 4 bits."""
    face = ImageFont.load_default(size=font.GLYPH_FONT_SIZE)
    image = Image.new("L", (font.GLYPH_CELL, font.GLYPH_CELL))
    origin = (font.glyph_origin_x(ch), font.GLYPH_BASELINE)
    ImageDraw.Draw(image).text(origin, ch, font=face, fill=255, anchor="ls")
    return np.rint(np.asarray(image, dtype=np.float64) * 15 / 255).astype(np.uint64)


def test_glyph_segment_matches_pillow_for_every_char() -> None:
    codes = np.arange(1 << font.GLYPH_IN_BITS, dtype=np.uint64)
    grey = font.glyph_reference(codes).reshape(32, 32, 32)
    assert grey.dtype == np.uint64 and int(grey.max()) == 15
    for g, ch in enumerate(font.GLYPH_CHARS):
        assert np.array_equal(grey[g], pillow_cell(ch)), ch
        # Every glyph has ink, and none of it touches the cell's edge (nothing clipped).
        assert grey[g].any()
        assert not grey[g][[0, -1], :].any() and not grey[g][:, [0, -1]].any(), ch
    assert not grey[len(font.GLYPH_CHARS) :].any()


@given(st.integers(0, (1 << font.GLYPH_IN_BITS) - 1))
def test_glyph_segment_scalar_agrees_with_table(code: int) -> None:
    g, y, x = code >> 10, (code >> 5) & 31, code & 31
    value = int(font.glyph_reference(np.array([code], dtype=np.uint64))[0])
    expected = int(pillow_cell(font.GLYPH_CHARS[g])[y, x]) if g < len(font.GLYPH_CHARS) else 0
    assert value == expected


def test_glyph_codes_layout() -> None:
    codes = font.glyph_codes("1 0")
    assert codes.dtype == np.uint64 and codes.size == 2 * 32 * 32
    assert int(codes[0]) == 1 << 10 and int(codes[1]) == (1 << 10) | 1
    assert int(codes[32]) == (1 << 10) | (1 << 5)
    assert int(codes[1024]) == 0


def test_text_alpha_places_cells_at_pen_positions() -> None:
    alpha = font.text_alpha("70", font.glyph_reference)
    adv7, adv0 = font.glyph_advance("7"), font.glyph_advance("0")
    assert alpha.shape == (32, adv7 + adv0) and alpha.dtype == np.uint8
    seven = pillow_cell("7").astype(np.uint8)
    ox = font.glyph_origin_x("7")
    # The first glyph's ink sits at its cell position shifted by its origin.
    assert np.array_equal(alpha[:, : adv7 - 1], seven[:, ox : ox + adv7 - 1])
    assert font.text_alpha("", font.glyph_reference).shape == (32, 0)
    assert font.text_alpha(" ", font.glyph_reference).max(initial=0) == 0


def test_text_alpha_rejects_unknown_chars() -> None:
    try:
        font.text_alpha("x", font.glyph_reference)
    except ValueError as exc:
        assert "'x'" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_half_scale_and_blend_are_exact() -> None:
    alpha = np.array([[15, 15, 0, 1], [15, 15, 0, 0]], dtype=np.uint8)
    assert font.half_scale(alpha).tolist() == [[15, 0]]
    region = np.zeros((1, 3, 3), dtype=np.uint8)
    font.blend(region, np.array([[0, 15, 7]], dtype=np.uint8), (255, 30, 0))
    assert region.tolist() == [[[0, 0, 0], [255, 30, 0], [119, 14, 0]]]
