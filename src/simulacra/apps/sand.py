"""Falling sand: a cellular automaton whose update rule is one program segment.

::

    grid (96 x 128 cells, 2 bits: empty, sand, water, wall), outside = wall
      │  per tick: the 2x2 block cut (ox, oy) alternates; ox flips at random every 8 ticks
      ▼
    per cell: 3x3 neighbourhood (18 bits) + its corner in its block (2 bits) = code
      │
      ▼  runner["sand_rule"](codes)        (an emulator or sand_rule_reference)
    new material of every cell ─► grid ─► render 4x (512 x 384) + a material bar

The rule is a Margolus block automaton: the grid is cut into 2x2 blocks, each
block rearranges its own four cells, and the cut shifts every tick. A cell
sees its whole block inside its 3x3 neighbourhood once it knows which corner
it holds, so all four cells of a block compute the same rearrangement, and a
rearrangement only ever swaps cells: nothing is created or lost.

Segment input, 20 bits::

    bits 2k..2k+1  material at (dy, dx), k = 3 * (dy + 1) + (dx + 1), k = 4 is the cell
    bit 18         1 = the cell is its block's right column
    bit 19         1 = the cell is its block's bottom row

Inside a block, in order (later steps only where no earlier one moved):
1. each column: a heavier movable cell over a lighter non-wall one swaps down
   (sand sinks through water);
2. one diagonal: a cell that could not fall slides to the lower far corner,
   unless the two other corners are both walls;
3. water on either row spreads sideways into an empty cell.
Because the horizontal cut flips at random, sliding and spreading go left
or right with equal odds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simulacra.apps.base import App, InputEvent, Segment, SegmentRunner

__all__ = [
    "Sand",
    "SandState",
    "sand_rule_reference",
    "neighbourhood_codes",
    "MATERIALS",
    "EMPTY",
    "SAND",
    "WATER",
    "WALL",
]

EMPTY, SAND, WATER, WALL = 0, 1, 2, 3
MATERIALS: tuple[str, ...] = ("empty", "sand", "water", "wall")
_DENSITY = np.array([0, 2, 1, 3], dtype=np.int8)

GRID_W, GRID_H, SCALE = 128, 96, 4
_BAR = 16
_BRUSH = 2  # radius in cells
_EPOCH = 8  # ticks between random flips of the horizontal block cut
_KEY_MATERIALS = {"1": SAND, "2": WATER, "3": WALL, "4": EMPTY}
_COLOURS = np.array(
    [(20, 22, 34), (222, 190, 110), (58, 118, 222), (128, 128, 136)], dtype=np.uint8
)


def _swap(cond: np.ndarray, p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.where(cond, q, p), np.where(cond, p, q)


def _sinks(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    movable = (top == SAND) | (top == WATER)
    return movable & (bottom != WALL) & (_DENSITY[top] > _DENSITY[bottom])


def _block_rule(
    tl: np.ndarray, tr: np.ndarray, bl: np.ndarray, br: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rearrange 2x2 blocks (vectorized); every branch is a swap, so mass is kept."""
    left, right = _sinks(tl, bl), _sinks(tr, br)
    tl, bl = _swap(left, tl, bl)
    tr, br = _swap(right, tr, br)
    moved = left | right
    down_right = ~moved & _sinks(tl, br) & ~((tr == WALL) & (bl == WALL))
    down_left = ~moved & _sinks(tr, bl) & ~((tl == WALL) & (br == WALL))
    tl, br = _swap(down_right, tl, br)
    tr, bl = _swap(down_left, tr, bl)
    moved |= down_right | down_left
    top = ~moved & (((tl == WATER) & (tr == EMPTY)) | ((tr == WATER) & (tl == EMPTY)))
    bottom = ~moved & (((bl == WATER) & (br == EMPTY)) | ((br == WATER) & (bl == EMPTY)))
    tl, tr = _swap(top, tl, tr)
    bl, br = _swap(bottom, bl, br)
    return tl, tr, bl, br


def sand_rule_reference(codes: np.ndarray) -> np.ndarray:
    """Segment ``sand_rule``: 3x3 neighbourhood + block corner -> the cell's new material."""
    codes = np.asarray(codes, dtype=np.uint64)
    hood = np.stack(
        [((codes >> np.uint64(2 * k)) & np.uint64(3)).astype(np.int8) for k in range(9)], axis=1
    )
    px = ((codes >> np.uint64(18)) & np.uint64(1)).astype(np.intp)
    py = ((codes >> np.uint64(19)) & np.uint64(1)).astype(np.intp)

    def at(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        k = 3 * (dy + 1) + (dx + 1)
        return np.take_along_axis(hood, k[:, None], axis=1)[:, 0]

    # The block's top-left corner sits at (-py, -px) from the cell.
    tl, tr = at(-py, -px), at(-py, 1 - px)
    bl, br = at(1 - py, -px), at(1 - py, 1 - px)
    corners = np.stack(_block_rule(tl, tr, bl, br), axis=1)
    mine = np.take_along_axis(corners, (2 * py + px)[:, None], axis=1)[:, 0]
    return mine.astype(np.uint64)


def neighbourhood_codes(grid: np.ndarray, ox: int, oy: int) -> np.ndarray:
    """The ``sand_rule`` input of every cell of ``grid`` for block offset (ox, oy)."""
    h, w = grid.shape
    padded = np.pad(grid.astype(np.uint32), 1, constant_values=WALL)
    codes = np.zeros((h, w), dtype=np.uint32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            k = 3 * (dy + 1) + (dx + 1)
            codes |= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] << np.uint32(2 * k)
    px = (np.arange(w, dtype=np.uint32) + np.uint32(ox)) & np.uint32(1)
    py = (np.arange(h, dtype=np.uint32) + np.uint32(oy)) & np.uint32(1)
    codes |= (px[None, :] << np.uint32(18)) | (py[:, None] << np.uint32(19))
    return codes.astype(np.uint64).ravel()


@dataclass(frozen=True, slots=True)
class SandState:
    """The world: ``cells`` holds GRID_H x GRID_W materials, one byte each, row-major.

    Randomness comes from ``(seed, tick, pours)`` so a state carries no generator.
    """

    cells: bytes
    material: int
    tick: int
    pours: int
    seed: int

    def grid(self) -> np.ndarray:
        return np.frombuffer(self.cells, dtype=np.uint8).reshape(GRID_H, GRID_W)

    def counts(self) -> tuple[int, int, int, int]:
        """How many cells hold each material (conserved by ticks)."""
        n = np.bincount(self.grid().ravel(), minlength=4)
        return (int(n[0]), int(n[1]), int(n[2]), int(n[3]))


def _rng(*words: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(words))))


def _scene(seed: int) -> np.ndarray:
    """A seeded opening scene: a few ledges, a heap of sand and a pool of water up top."""
    rng = _rng(seed, 0xC0FFEE)
    grid = np.zeros((GRID_H, GRID_W), dtype=np.uint8)
    for _ in range(4):
        y = int(rng.integers(36, GRID_H - 12))
        x = int(rng.integers(0, GRID_W - 40))
        grid[y : y + 2, x : x + int(rng.integers(20, 40))] = WALL
    grid[4:28, 12:52][rng.random((24, 40)) < 0.7] = SAND
    grid[4:28, 76:116][rng.random((24, 40)) < 0.8] = WATER
    return grid


class Sand(App):
    """Falling sand, water and walls; paint with the pointer, pick a material below."""

    name: ClassVar[str] = "sand"
    title: ClassVar[str] = "Falling sand"
    width: ClassVar[int] = GRID_W * SCALE
    height: ClassVar[int] = GRID_H * SCALE + _BAR
    tick_hz: ClassVar[float] = 30.0
    segments: ClassVar[tuple[Segment, ...]] = (
        Segment(
            "sand_rule",
            20,
            2,
            sand_rule_reference,
            "new material of a cell from its 3x3 neighbourhood and its corner in its 2x2 block",
        ),
    )

    def __init__(self, runner: SegmentRunner | None = None) -> None:
        super().__init__(runner)
        self._bar = self._draw_bar_base()

    # -- rules ---------------------------------------------------------------

    def reset(self, seed: int) -> SandState:
        return SandState(_scene(seed).tobytes(), SAND, 0, 0, seed)

    def tick(self, state: SandState) -> SandState:
        """One automaton step over the whole grid, through the ``sand_rule`` segment."""
        # The cut alternates every tick, so grains fall and water runs a cell per tick;
        # which columns pair up flips at random every few ticks, so neither side is favoured.
        flip = int(_rng(state.seed, 1, state.tick // _EPOCH).integers(0, 2))
        oy = state.tick & 1
        ox = oy ^ flip
        codes = neighbourhood_codes(state.grid(), ox, oy)
        new = np.asarray(self.runner["sand_rule"](codes), dtype=np.uint64)
        cells = (new & np.uint64(3)).astype(np.uint8).tobytes()
        return SandState(cells, state.material, state.tick + 1, state.pours, state.seed)

    def pour(self, state: SandState, x: int, y: int) -> SandState:
        """Paint the selected material in a small disc around framebuffer pixel (x, y)."""
        cx, cy = x // SCALE, y // SCALE
        grid = state.grid().copy()
        ys, xs = np.mgrid[-_BRUSH : _BRUSH + 1, -_BRUSH : _BRUSH + 1]
        disc = ys * ys + xs * xs <= _BRUSH * _BRUSH + 1
        ys, xs = ys[disc] + cy, xs[disc] + cx
        inside = (ys >= 0) & (ys < GRID_H) & (xs >= 0) & (xs < GRID_W)
        ys, xs = ys[inside], xs[inside]
        if state.material in (SAND, WATER):
            # Grains fall into empty cells only, and not all at once, so it pours.
            rng = _rng(state.seed, 2, state.tick, state.pours)
            keep = (grid[ys, xs] == EMPTY) & (rng.random(ys.size) < 0.5)
            ys, xs = ys[keep], xs[keep]
        grid[ys, xs] = state.material
        return SandState(grid.tobytes(), state.material, state.tick, state.pours + 1, state.seed)

    def select(self, state: SandState, material: int) -> SandState:
        return SandState(state.cells, material, state.tick, state.pours, state.seed)

    def step(self, state: SandState, event: InputEvent | None) -> SandState:
        if event is None:
            return self.tick(state)
        if event.kind == "select" and event.key in MATERIALS:
            return self.select(state, MATERIALS.index(event.key))
        if event.kind == "key":
            if event.key in _KEY_MATERIALS:
                return self.select(state, _KEY_MATERIALS[event.key])
            if event.key in ("r", "R"):
                return SandState(
                    _scene(state.seed + state.pours + state.tick + 1).tobytes(),
                    state.material,
                    state.tick,
                    state.pours + 1,
                    state.seed,
                )
            return state
        if event.kind == "pointer" and event.buttons & 1:
            if not (0 <= event.x < self.width and 0 <= event.y < self.height):
                return state
            if event.y >= GRID_H * SCALE:
                return self.select(state, event.x * len(MATERIALS) // self.width)
            return self.pour(state, event.x, event.y)
        return state

    # -- rendering -----------------------------------------------------------

    def _draw_bar_base(self) -> np.ndarray:
        bar = np.empty((_BAR, self.width, 3), dtype=np.uint8)
        bar[:] = (44, 44, 52)
        swatch = self.width // len(MATERIALS)
        for m in range(len(MATERIALS)):
            bar[3 : _BAR - 3, m * swatch + 3 : (m + 1) * swatch - 3] = _COLOURS[m]
        return bar

    def render(self, state: SandState) -> np.ndarray:
        fb = np.empty((self.height, self.width, 3), dtype=np.uint8)
        pixels = _COLOURS[state.grid()]
        fb[: GRID_H * SCALE] = pixels.repeat(SCALE, axis=0).repeat(SCALE, axis=1)
        bar = fb[GRID_H * SCALE :]
        bar[:] = self._bar
        swatch = self.width // len(MATERIALS)
        x0 = state.material * swatch
        # The selected swatch gets a white frame.
        bar[0:2, x0 : x0 + swatch] = 255
        bar[_BAR - 2 : _BAR, x0 : x0 + swatch] = 255
        bar[:, x0 : x0 + 2] = 255
        bar[:, x0 + swatch - 2 : x0 + swatch] = 255
        return fb
