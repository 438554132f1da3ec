"""Glyph rasterization: Pillow's bundled FreeType font to a glyph table, and text compositing.

::

    start-up: Pillow FreeType font ─► rasterize each char into a 32x32 cell ─► GLYPH_TABLE
                                      (grey 0..255 quantized to 4 bits)       (glyph, y, x) -> grey

    run time: "2048" ─► glyph codes (g << 10 | y << 5 | x) ─► runner["glyph"] ─► cells
                                                              (an emulator or glyph_reference)
                      cells placed at pen positions (advance table) ─► alpha bitmap ─► blend

The glyph segment's input is ``(glyph << 10) | (y << 5) | x`` (15 bits), its
output a grey level 0..15 (4 bits). Glyph indices past ``len(GLYPH_CHARS)``
answer 0, so the segment is total over its domain. The font is Pillow's own
(``ImageFont.load_default(size=...)``, FreeType since Pillow 10.1), never a
system font, so the table is the same for a given Pillow build on any machine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "GLYPH_CHARS",
    "GLYPH_CELL",
    "GLYPH_FONT_SIZE",
    "GLYPH_BASELINE",
    "GLYPH_GREY_BITS",
    "GLYPH_IN_BITS",
    "glyph_origin_x",
    "glyph_advance",
    "glyph_reference",
    "glyph_codes",
    "text_alpha",
    "half_scale",
    "blend",
]

GLYPH_CHARS = "0123456789ABCEGMORSTV"
GLYPH_CELL = 32  # cell side in pixels: 5 bits of y, 5 bits of x
GLYPH_FONT_SIZE = 34  # largest size whose widest glyph ("M") stays inside the cell
GLYPH_BASELINE = 28  # puts the ink of digits and capitals (rows 4..27) mid-cell
GLYPH_GREY_BITS = 4
GLYPH_IN_BITS = 15
_GLYPH_SLOTS = 32  # 5 bits of glyph index
_GREY_MAX = (1 << GLYPH_GREY_BITS) - 1

_FONT = ImageFont.load_default(size=GLYPH_FONT_SIZE)


def glyph_advance(ch: str) -> int:
    """Pen advance of ``ch`` in pixels."""
    return int(round(_FONT.getlength(ch)))


def glyph_origin_x(ch: str) -> int:
    """Where the pen starts inside the cell, so the glyph sits centred in it."""
    return (GLYPH_CELL - glyph_advance(ch)) // 2


def _rasterize() -> np.ndarray:
    table = np.zeros((_GLYPH_SLOTS, GLYPH_CELL, GLYPH_CELL), dtype=np.uint8)
    for g, ch in enumerate(GLYPH_CHARS):
        image = Image.new("L", (GLYPH_CELL, GLYPH_CELL), 0)
        ImageDraw.Draw(image).text(
            (glyph_origin_x(ch), GLYPH_BASELINE), ch, font=_FONT, fill=255, anchor="ls"
        )
        grey = np.asarray(image, dtype=np.uint32)
        table[g] = (grey * _GREY_MAX + 127) // 255
    table.setflags(write=False)
    return table


_GLYPH_TABLE = _rasterize()


def glyph_reference(codes: np.ndarray) -> np.ndarray:
    """Segment ``glyph``: ``(g << 10) | (y << 5) | x`` -> grey level 0..15."""
    codes = np.asarray(codes, dtype=np.uint64) & np.uint64((1 << GLYPH_IN_BITS) - 1)
    g = (codes >> np.uint64(10)).astype(np.intp)
    y = ((codes >> np.uint64(5)) & np.uint64(31)).astype(np.intp)
    x = (codes & np.uint64(31)).astype(np.intp)
    return _GLYPH_TABLE[g, y, x].astype(np.uint64)


_CELL_OFFSETS = (
    (np.arange(GLYPH_CELL, dtype=np.uint64)[:, None] << np.uint64(5))
    | np.arange(GLYPH_CELL, dtype=np.uint64)[None, :]
).ravel()


def glyph_codes(text: str) -> np.ndarray:
    """The glyph segment inputs covering every cell pixel of ``text``'s glyphs, in order."""
    indices = [GLYPH_CHARS.index(ch) for ch in text if ch != " "]
    g = np.asarray(indices, dtype=np.uint64)[:, None] << np.uint64(10)
    return (g | _CELL_OFFSETS[None, :]).ravel()


def text_alpha(text: str, glyph: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Alpha bitmap (0..15, uint8, height GLYPH_CELL) of ``text``, via one ``glyph`` call.

    Raises ``ValueError`` for a character outside ``GLYPH_CHARS`` and space.
    """
    for ch in text:
        if ch != " " and ch not in GLYPH_CHARS:
            raise ValueError(f"no glyph for {ch!r}")
    inked = [ch for ch in text if ch != " "]
    cells = np.zeros((0, GLYPH_CELL, GLYPH_CELL), dtype=np.uint8)
    if inked:
        grey = np.asarray(glyph(glyph_codes(text)), dtype=np.uint64)
        cells = np.minimum(grey, _GREY_MAX).astype(np.uint8).reshape(-1, GLYPH_CELL, GLYPH_CELL)
    pens = []
    pen = 0
    for ch in text:
        pens.append(pen)
        pen += glyph_advance(ch)
    # Cells overhang the pen span by their padding; keep the whole ink, trim after.
    pad = GLYPH_CELL
    canvas = np.zeros((GLYPH_CELL, pen + 2 * pad), dtype=np.uint8)
    k = 0
    for ch, p in zip(text, pens, strict=True):
        if ch == " ":
            continue
        left = pad + p - glyph_origin_x(ch)
        view = canvas[:, left : left + GLYPH_CELL]
        np.maximum(view, cells[k], out=view)
        k += 1
    return canvas[:, pad : pad + pen].copy()


def half_scale(alpha: np.ndarray) -> np.ndarray:
    """Halve a 0..15 alpha bitmap by averaging 2x2 blocks (integer, rounded)."""
    h, w = alpha.shape[0] // 2 * 2, alpha.shape[1] // 2 * 2
    a = alpha[:h, :w].astype(np.uint16)
    total = a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]
    return ((total + 2) // 4).astype(np.uint8)


def blend(region: np.ndarray, alpha: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Paint ``colour`` over ``region`` (uint8 RGB view) through a 0..15 ``alpha``, in place."""
    a = alpha.astype(np.uint16)[:, :, None]
    fg = np.asarray(colour, dtype=np.uint16)[None, None, :]
    mixed = (region.astype(np.uint16) * (_GREY_MAX - a) + fg * a + _GREY_MAX // 2) // _GREY_MAX
    region[...] = mixed.astype(np.uint8)
