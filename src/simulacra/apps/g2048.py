"""2048 on a 4x4 board, every move computed by a program segment.

::

    key ─► direction ─► 4 lines (rows or columns, reversed as needed) ─► row codes
                                                                          │
          runner["row_move_left"](codes) ─► moved lines ◄─────────────────┤
          runner["row_score"](codes)     ─► score gain  ◄─────────────────┘
          board changed? ─► spawn a 2 (p=0.9) or a 4 in an empty cell (seeded PCG64)
          runner["row_move_left"] on all 16 lines ─► no line moves ─► game over

    render: tiles, score and texts composited from glyph cells (runner["glyph"])

A row code packs four cells as 4-bit exponents (0 = empty, e = tile 2**e);
cell 0 (the one a left move pushes toward) sits in the LOW nibble::

    code = c0 | c1 << 4 | c2 << 8 | c3 << 12

Tiles of exponent 15 (32768) do not merge, so every result fits a nibble.
``row_score`` answers the points a left move of that row earns: the sum of
the merged tiles' values (at most 2 * 32768, hence 17 output bits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simulacra.apps import font
from simulacra.apps.base import App, InputEvent, Segment, SegmentRunner

__all__ = [
    "G2048",
    "G2048State",
    "row_move_left_reference",
    "row_score_reference",
    "pack_line",
    "unpack_line",
    "TILE_COLOURS",
    "replay",
]

_MAX_EXP = 15
_NIBBLE = np.uint64(15)


def _cells(codes: np.ndarray) -> list[np.ndarray]:
    codes = np.asarray(codes, dtype=np.uint64)
    return [((codes >> np.uint64(4 * i)) & _NIBBLE).astype(np.int64) for i in range(4)]


def _slide_and_merge(codes: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Shared by both row segments: compact toward cell 0, then merge pairs once each."""
    cells = np.stack(_cells(codes), axis=1)
    # A stable argsort of "is empty" moves tiles left and keeps their order.
    order = np.argsort(cells == 0, axis=1, kind="stable")
    a, b, c, d = (np.take_along_axis(cells, order, axis=1)[:, i] for i in range(4))
    zero = np.zeros_like(a)

    def pair(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return (p != 0) & (p == q) & (p < _MAX_EXP)

    ab, bc, cd = pair(a, b), pair(b, c), pair(c, d)
    ab_cd = ab & cd
    gain = np.zeros(a.shape, dtype=np.uint64)

    def value(e: np.ndarray, merged: np.ndarray) -> np.ndarray:
        return np.where(merged, np.uint64(1) << e.astype(np.uint64), np.uint64(0))

    # Case ab: (a+1, then c,d merged or not); else case bc: (a, b+1, d); else (a, b, c,d merged or not).
    out0 = np.where(ab, a + 1, a)
    out1 = np.where(ab, np.where(cd, c + 1, c), np.where(bc, b + 1, b))
    out2 = np.where(ab, np.where(cd, zero, d), np.where(bc, d, np.where(cd, c + 1, c)))
    out3 = np.where(ab | bc | cd, zero, d)
    gain += value(a + 1, ab)
    gain += value(c + 1, ab_cd)
    gain += value(b + 1, ~ab & bc)
    gain += value(c + 1, ~ab & ~bc & cd)
    return [out0, out1, out2, out3], gain


def row_move_left_reference(codes: np.ndarray) -> np.ndarray:
    """Segment ``row_move_left``: a packed row -> the packed row after a left move."""
    out, _ = _slide_and_merge(codes)
    packed = np.zeros(out[0].shape, dtype=np.uint64)
    for i, cell in enumerate(out):
        packed |= cell.astype(np.uint64) << np.uint64(4 * i)
    return packed


def row_score_reference(codes: np.ndarray) -> np.ndarray:
    """Segment ``row_score``: a packed row -> points earned by moving it left."""
    _, gain = _slide_and_merge(codes)
    return gain


def pack_line(cells: np.ndarray) -> np.ndarray:
    """(..., 4) exponents -> (...) row codes, cell 0 in the low nibble."""
    cells = np.asarray(cells, dtype=np.uint64)
    shifts = np.arange(4, dtype=np.uint64) * np.uint64(4)
    return np.bitwise_or.reduce(cells << shifts, axis=-1)


def unpack_line(codes: np.ndarray) -> np.ndarray:
    """(...) row codes -> (..., 4) exponents as uint8."""
    codes = np.asarray(codes, dtype=np.uint64)[..., None]
    shifts = np.arange(4, dtype=np.uint64) * np.uint64(4)
    return ((codes >> shifts) & _NIBBLE).astype(np.uint8)


# Each direction as (transpose first?, reverse each line?) applied to the board's rows.
_DIRECTIONS: dict[str, tuple[bool, bool]] = {
    "left": (False, False),
    "right": (False, True),
    "up": (True, False),
    "down": (True, True),
}
_KEYS = {
    "ArrowLeft": "left",
    "ArrowRight": "right",
    "ArrowUp": "up",
    "ArrowDown": "down",
    "a": "left",
    "d": "right",
    "w": "up",
    "s": "down",
    "A": "left",
    "D": "right",
    "W": "up",
    "S": "down",
}
_RESTART_KEYS = frozenset({"r", "R", "Enter"})


def _to_lines(board: np.ndarray, direction: str) -> np.ndarray:
    transpose, reverse = _DIRECTIONS[direction]
    lines = board.T if transpose else board
    return lines[:, ::-1] if reverse else lines


def _from_lines(lines: np.ndarray, direction: str) -> np.ndarray:
    transpose, reverse = _DIRECTIONS[direction]
    board = lines[:, ::-1] if reverse else lines
    return board.T if transpose else board


RngState = tuple[int, int, int, int]


def _rng_load(state: RngState) -> np.random.Generator:
    bits = np.random.PCG64()
    bits.state = {
        "bit_generator": "PCG64",
        "state": {"state": state[0], "inc": state[1]},
        "has_uint32": state[2],
        "uinteger": state[3],
    }
    return np.random.Generator(bits)


def _rng_save(rng: np.random.Generator) -> RngState:
    s = rng.bit_generator.state
    return (
        int(s["state"]["state"]),
        int(s["state"]["inc"]),
        int(s["has_uint32"]),
        int(s["uinteger"]),
    )


@dataclass(frozen=True, slots=True)
class G2048State:
    """One game. ``board`` holds 16 exponents row-major (0 = empty, e = tile 2**e)."""

    board: tuple[int, ...]
    score: int
    best: int
    over: bool
    moves: int
    rng: RngState

    def grid(self) -> np.ndarray:
        return np.asarray(self.board, dtype=np.uint8).reshape(4, 4)


# Classic 2048 palette, by exponent; past 2048 every tile is the dark one.
TILE_COLOURS: dict[int, tuple[int, int, int]] = {
    0: (205, 193, 180),
    1: (238, 228, 218),
    2: (237, 224, 200),
    3: (242, 177, 121),
    4: (245, 149, 99),
    5: (246, 124, 95),
    6: (246, 94, 59),
    7: (237, 207, 114),
    8: (237, 204, 97),
    9: (237, 200, 80),
    10: (237, 197, 63),
    11: (237, 194, 46),
}
_DARK_TILE = (60, 58, 50)
_PAGE = (250, 248, 239)
_BOARD = (187, 173, 160)
_DARK_TEXT = (119, 110, 101)
_LIGHT_TEXT = (249, 246, 242)
_LABEL_TEXT = (238, 228, 218)
_OVERLAY = (238, 228, 218)
_OVERLAY_ALPHA = 186  # of 255

_W, _H = 480, 560
_HEADER = 80
_GAP = 12
_TILE = 105  # 4 * 105 + 5 * 12 = 480
_RADIUS = 4
_SCORE_BOX = (232, 10, 116, 60)  # x, y, w, h
_BEST_BOX = (356, 10, 112, 60)
_TEXT_CACHE_LIMIT = 256


def _tile_mask() -> np.ndarray:
    """Rounded-corner mask of a tile: True inside."""
    yy, xx = np.mgrid[0:_TILE, 0:_TILE]
    cy = np.clip(yy, _RADIUS, _TILE - 1 - _RADIUS)
    cx = np.clip(xx, _RADIUS, _TILE - 1 - _RADIUS)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= _RADIUS * _RADIUS


class G2048(App):
    """The 2048 sliding-tile game (480 x 560: an 80-pixel header over the board)."""

    name: ClassVar[str] = "2048"
    title: ClassVar[str] = "2048"
    width: ClassVar[int] = _W
    height: ClassVar[int] = _H
    tick_hz: ClassVar[float] = 0.0
    segments: ClassVar[tuple[Segment, ...]] = (
        Segment(
            "row_move_left",
            16,
            16,
            row_move_left_reference,
            "a row of four 4-bit exponents (cell 0 low) after a left move",
        ),
        Segment(
            "row_score",
            16,
            17,
            row_score_reference,
            "points a left move of the row earns",
        ),
        Segment(
            "glyph",
            font.GLYPH_IN_BITS,
            font.GLYPH_GREY_BITS,
            font.glyph_reference,
            "grey level of pixel (y, x) of glyph g: input g << 10 | y << 5 | x",
        ),
    )

    def __init__(self, runner: SegmentRunner | None = None) -> None:
        super().__init__(runner)
        # Text bitmaps come from the glyph segment once per distinct string; bounded.
        self._text_cache: dict[tuple[str, bool], np.ndarray] = {}
        self._tile_cache: dict[int, np.ndarray] = {}
        self._mask = _tile_mask()
        self._base = self._draw_base()

    # -- rules ---------------------------------------------------------------

    def reset(self, seed: int) -> G2048State:
        rng = np.random.Generator(np.random.PCG64(seed))
        return self._new_game(rng, best=0)

    def _new_game(self, rng: np.random.Generator, best: int) -> G2048State:
        board = np.zeros(16, dtype=np.uint8)
        self._spawn(board, rng)
        self._spawn(board, rng)
        return G2048State(tuple(int(v) for v in board), 0, best, False, 0, _rng_save(rng))

    @staticmethod
    def _spawn(board: np.ndarray, rng: np.random.Generator) -> None:
        empty = np.flatnonzero(board == 0)
        if empty.size == 0:
            return
        cell = empty[int(rng.integers(empty.size))]
        board[cell] = 1 if rng.random() < 0.9 else 2

    def move(self, state: G2048State, direction: str) -> G2048State:
        """Apply one move in ``direction`` ("left", "right", "up", "down")."""
        if state.over:
            return state
        grid, gain = self.slide(state.grid(), direction)
        if gain is None:
            return state
        board = grid.ravel()
        rng = _rng_load(state.rng)
        self._spawn(board, rng)
        score = state.score + gain
        return G2048State(
            board=tuple(int(v) for v in board),
            score=score,
            best=max(state.best, score),
            over=self._stuck(board.reshape(4, 4)),
            moves=state.moves + 1,
            rng=_rng_save(rng),
        )

    def slide(self, grid: np.ndarray, direction: str) -> tuple[np.ndarray, int | None]:
        """The 4x4 exponent grid after a move (no spawn) and the points; None if nothing moved."""
        lines = np.ascontiguousarray(_to_lines(np.asarray(grid, dtype=np.uint8), direction))
        codes = pack_line(lines)
        moved = np.asarray(self.runner["row_move_left"](codes), dtype=np.uint64)
        if np.array_equal(moved, codes):
            return np.asarray(grid, dtype=np.uint8).copy(), None
        gain = int(np.asarray(self.runner["row_score"](codes), dtype=np.uint64).sum())
        return np.ascontiguousarray(_from_lines(unpack_line(moved), direction)), gain

    def _stuck(self, grid: np.ndarray) -> bool:
        if (grid == 0).any():
            return False
        lines = np.concatenate([_to_lines(grid, d) for d in _DIRECTIONS])
        codes = pack_line(lines)
        moved = np.asarray(self.runner["row_move_left"](codes), dtype=np.uint64)
        return bool(np.array_equal(moved, codes))

    def step(self, state: G2048State, event: InputEvent | None) -> G2048State:
        if event is None or event.kind != "key":
            return state
        if event.key in _RESTART_KEYS:
            return self._new_game(_rng_load(state.rng), best=state.best)
        direction = _KEYS.get(event.key)
        if direction is None:
            return state
        return self.move(state, direction)

    # -- rendering -----------------------------------------------------------

    def _text(self, text: str, *, small: bool = False) -> np.ndarray:
        key = (text, small)
        alpha = self._text_cache.get(key)
        if alpha is None:
            if small:
                alpha = font.half_scale(self._text(text))
            else:
                alpha = font.text_alpha(text, self.runner["glyph"])
            if len(self._text_cache) >= _TEXT_CACHE_LIMIT:
                self._text_cache.clear()
                self._tile_cache.clear()
            self._text_cache[key] = alpha
        return alpha

    def _fitted(self, text: str, max_width: int) -> np.ndarray:
        alpha = self._text(text)
        return alpha if alpha.shape[1] <= max_width else self._text(text, small=True)

    @staticmethod
    def _put_text(
        fb: np.ndarray, alpha: np.ndarray, cx: int, cy: int, colour: tuple[int, int, int]
    ) -> None:
        """Blend ``alpha`` centred on (cx, cy)."""
        h, w = alpha.shape
        y0, x0 = cy - h // 2, cx - w // 2
        font.blend(fb[y0 : y0 + h, x0 : x0 + w], alpha, colour)

    def _draw_base(self) -> np.ndarray:
        fb = np.empty((_H, _W, 3), dtype=np.uint8)
        fb[:_HEADER] = _PAGE
        fb[_HEADER:] = _BOARD
        for x, y, w, h in (_SCORE_BOX, _BEST_BOX):
            fb[y : y + h, x : x + w] = _BOARD
        for r in range(4):
            for c in range(4):
                y, x = self._tile_origin(r, c)
                region = fb[y : y + _TILE, x : x + _TILE]
                region[self._mask] = TILE_COLOURS[0]
        return fb

    @staticmethod
    def _tile_origin(r: int, c: int) -> tuple[int, int]:
        return _HEADER + _GAP + r * (_TILE + _GAP), _GAP + c * (_TILE + _GAP)

    def _tile(self, exponent: int) -> np.ndarray:
        tile = self._tile_cache.get(exponent)
        if tile is None:
            tile = np.empty((_TILE, _TILE, 3), dtype=np.uint8)
            tile[:] = _BOARD
            tile[self._mask] = TILE_COLOURS.get(exponent, _DARK_TILE)
            colour = _DARK_TEXT if exponent <= 2 else _LIGHT_TEXT
            alpha = self._fitted(str(1 << exponent), _TILE - 8)
            self._put_text(tile, alpha, _TILE // 2, _TILE // 2, colour)
            self._tile_cache[exponent] = tile
        return tile

    def render(self, state: G2048State) -> np.ndarray:
        fb = self._base.copy()
        self._put_text(fb, self._text("2048"), 12 + 40, _HEADER // 2, _DARK_TEXT)
        for (x, y, w, _h), label, value in (
            (_SCORE_BOX, "SCORE", state.score),
            (_BEST_BOX, "BEST", state.best),
        ):
            self._put_text(fb, self._text(label, small=True), x + w // 2, y + 14, _LABEL_TEXT)
            self._put_text(fb, self._fitted(str(value), w - 8), x + w // 2, y + 40, _LIGHT_TEXT)
        grid = state.grid()
        for r in range(4):
            for c in range(4):
                e = int(grid[r, c])
                if e:
                    y, x = self._tile_origin(r, c)
                    fb[y : y + _TILE, x : x + _TILE] = self._tile(e)
        if state.over:
            board = fb[_HEADER:]
            mixed = (
                board.astype(np.uint16) * (255 - _OVERLAY_ALPHA)
                + np.asarray(_OVERLAY, dtype=np.uint16) * _OVERLAY_ALPHA
                + 127
            ) // 255
            board[...] = mixed.astype(np.uint8)
            self._put_text(fb, self._text("GAME OVER"), _W // 2, _HEADER + 240, _DARK_TEXT)
        return fb


def replay(app: G2048, seed: int, keys: list[str]) -> G2048State:
    """Play ``keys`` from a fresh game (tests and benchmarks)."""
    state = app.reset(seed)
    for key in keys:
        state = app.step(state, InputEvent("key", key))
    return state
