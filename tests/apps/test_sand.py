"""Falling sand: the rule segment over its whole domain, conservation, input, rendering."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulacra.apps.base import InputEvent
from simulacra.apps.sand import (
    EMPTY,
    GRID_H,
    GRID_W,
    SAND,
    WALL,
    WATER,
    Sand,
    SandState,
    neighbourhood_codes,
    sand_rule_reference,
)

ALL = np.arange(1 << 20, dtype=np.uint64)


def cell(codes: np.ndarray, dy: int, dx: int) -> np.ndarray:
    k = 3 * (dy + 1) + (dx + 1)
    return (codes >> np.uint64(2 * k)) & np.uint64(3)


def encode(hood: dict[tuple[int, int], int], px: int, py: int) -> int:
    code = (px << 18) | (py << 19)
    for (dy, dx), m in hood.items():
        code |= m << (2 * (3 * (dy + 1) + (dx + 1)))
    return code


def block_outputs(tl: int, tr: int, bl: int, br: int) -> tuple[int, int, int, int]:
    """The segment's answer for each corner of one block (other neighbours empty)."""
    corners = {(0, 0): tl, (0, 1): tr, (1, 0): bl, (1, 1): br}
    out = []
    for y, x in corners:
        hood = {(by - y, bx - x): m for (by, bx), m in corners.items()}
        out.append(int(sand_rule_reference(np.array([encode(hood, x, y)], dtype=np.uint64))[0]))
    return out[0], out[1], out[2], out[3]


def test_output_depends_only_on_the_block() -> None:
    px = (ALL >> np.uint64(18)) & np.uint64(1)
    py = (ALL >> np.uint64(19)) & np.uint64(1)
    keep = np.zeros_like(ALL)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            in_block = ((dy == 0) | (dy == 1 - 2 * py.astype(np.int64))) & (
                (dx == 0) | (dx == 1 - 2 * px.astype(np.int64))
            )
            k = 3 * (dy + 1) + (dx + 1)
            keep |= np.where(in_block, np.uint64(3) << np.uint64(2 * k), np.uint64(0))
    canonical = (ALL & keep) | (ALL & np.uint64(3 << 18))
    assert np.array_equal(sand_rule_reference(ALL), sand_rule_reference(canonical))


def test_every_block_is_rearranged_not_changed() -> None:
    for b in range(256):
        block = (b & 3, (b >> 2) & 3, (b >> 4) & 3, (b >> 6) & 3)
        out = block_outputs(*block)
        assert sorted(out) == sorted(block), block
        for before, after in zip(block, out, strict=True):
            assert (before == WALL) == (after == WALL), block


def test_rule_is_mirror_symmetric() -> None:
    mirrored = ALL ^ np.uint64(1 << 18)
    for dy in (-1, 0, 1):
        left, right = cell(ALL, dy, -1), cell(ALL, dy, 1)
        kl, kr = 3 * (dy + 1), 3 * (dy + 1) + 2
        mirrored &= ~np.uint64((3 << (2 * kl)) | (3 << (2 * kr)))
        mirrored |= (right << np.uint64(2 * kl)) | (left << np.uint64(2 * kr))
    assert np.array_equal(sand_rule_reference(ALL), sand_rule_reference(mirrored))


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ((SAND, EMPTY, EMPTY, EMPTY), (EMPTY, EMPTY, SAND, EMPTY)),  # falls
        ((SAND, SAND, EMPTY, EMPTY), (EMPTY, EMPTY, SAND, SAND)),
        ((SAND, EMPTY, SAND, EMPTY), (EMPTY, EMPTY, SAND, SAND)),  # slides down the side
        ((SAND, EMPTY, WALL, EMPTY), (EMPTY, EMPTY, WALL, SAND)),  # off a ledge
        ((SAND, WALL, WALL, EMPTY), (SAND, WALL, WALL, EMPTY)),  # no leak through a corner
        ((SAND, EMPTY, WATER, EMPTY), (WATER, EMPTY, SAND, EMPTY)),  # sinks through water
        ((EMPTY, EMPTY, WATER, EMPTY), (EMPTY, EMPTY, EMPTY, WATER)),  # water spreads
        ((WATER, EMPTY, SAND, SAND), (EMPTY, WATER, SAND, SAND)),
        ((SAND, SAND, SAND, SAND), (SAND, SAND, SAND, SAND)),
        ((WATER, SAND, EMPTY, WATER), (EMPTY, WATER, WATER, SAND)),
        ((WALL, WALL, WALL, WALL), (WALL, WALL, WALL, WALL)),
    ],
)
def test_block_cases(block: tuple[int, ...], expected: tuple[int, ...]) -> None:
    assert block_outputs(*block) == expected


def test_neighbourhood_codes_layout() -> None:
    grid = np.zeros((GRID_H, GRID_W), dtype=np.uint8)
    grid[0, 1] = SAND
    grid[1, 0] = WATER
    codes = neighbourhood_codes(grid, ox=1, oy=0).reshape(GRID_H, GRID_W)
    wall_row = WALL | WALL << 2 | WALL << 4
    # Cell (0, 0): walls above and to the left, sand right, water below; right member.
    expected = wall_row | WALL << 6 | SAND << 10 | WALL << 12 | WATER << 14 | 1 << 18
    assert int(codes[0, 0]) == expected
    assert int(codes[1, 1]) == (SAND << 2) | (WATER << 6) | (0 << 18) | (1 << 19)
    assert codes.dtype == np.uint64


def run(app: Sand, state: SandState, ticks: int) -> SandState:
    for _ in range(ticks):
        state = app.step(state, None)
    return state


@pytest.mark.parametrize("seed", [0, 1])
def test_ticks_conserve_every_material(seed: int) -> None:
    app = Sand()
    state = app.reset(seed)
    before = state.counts()
    assert before[SAND] > 0 and before[WATER] > 0 and before[WALL] > 0
    walls = state.grid() == WALL
    state = run(app, state, 300)
    assert state.counts() == before
    assert np.array_equal(state.grid() == WALL, walls)
    assert state.tick == 300


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_random_worlds_conserve_mass(seed: int, fill: float) -> None:
    rng = np.random.default_rng(seed)
    grid = rng.choice(4, size=(GRID_H, GRID_W), p=[1 - fill, fill / 3, fill / 3, fill / 3])
    app = Sand()
    state = SandState(grid.astype(np.uint8).tobytes(), SAND, 0, 0, seed)
    after = run(app, state, 20)
    assert after.counts() == state.counts()


def test_sand_settles_and_water_levels() -> None:
    app = Sand()
    grid = np.zeros((GRID_H, GRID_W), dtype=np.uint8)
    grid[0:10, 60:68] = SAND
    state = run(app, SandState(grid.tobytes(), SAND, 0, 0, 3), 400)
    g = state.grid()
    assert g[-1, 60:68].tolist() == [SAND] * 8  # reached the floor
    assert not g[: GRID_H - 12].any()  # nothing left up high: a low heap
    grid = np.zeros((GRID_H, GRID_W), dtype=np.uint8)
    grid[GRID_H - 24 :, 0:8] = WATER  # a column of water against the left wall
    state = run(app, SandState(grid.tobytes(), SAND, 0, 0, 4), 600)
    g = state.grid()
    assert (g[:, GRID_W // 2 :] == WATER).any()  # it ran across the floor
    assert not (g[: GRID_H - 8] == WATER).any()  # and fell flat


def test_pointer_pours_into_empty_cells_only() -> None:
    app = Sand()
    state = app.reset(0)
    grid = np.zeros((GRID_H, GRID_W), dtype=np.uint8)
    grid[50, 50] = WALL
    state = SandState(grid.tobytes(), SAND, 0, 0, 0)
    poured = app.step(state, InputEvent("pointer", x=50 * 4 + 1, y=50 * 4 + 2, buttons=1))
    g = poured.grid()
    assert g[50, 50] == WALL and 1 <= int((g == SAND).sum()) <= 20
    ys, xs = np.nonzero(g == SAND)
    assert (np.abs(ys - 50) <= 2).all() and (np.abs(xs - 50) <= 2).all()
    assert poured.pours == 1
    again = app.step(poured, InputEvent("pointer", x=201, y=202, buttons=1))
    assert again.counts()[SAND] >= poured.counts()[SAND]
    # No button, or off screen: nothing happens.
    assert app.step(state, InputEvent("pointer", x=200, y=200, buttons=0)) is state
    assert app.step(state, InputEvent("pointer", x=-5, y=200, buttons=1)) is state


def test_walls_and_eraser_overwrite() -> None:
    app = Sand()
    state = SandState(np.full((GRID_H, GRID_W), SAND, dtype=np.uint8).tobytes(), WALL, 0, 0, 0)
    walled = app.step(state, InputEvent("pointer", x=400, y=300, buttons=1))
    assert walled.counts()[WALL] == 21  # the whole brush: 5x5 less its corners
    erased = app.step(app.select(walled, EMPTY), InputEvent("pointer", x=400, y=300, buttons=1))
    assert erased.counts()[EMPTY] == 21 and erased.counts()[WALL] == 0


def test_selecting_materials() -> None:
    app = Sand()
    state = app.reset(0)
    assert state.material == SAND
    assert app.step(state, InputEvent("select", key="water")).material == WATER
    assert app.step(state, InputEvent("select", key="lava")) is state
    for key, material in (("1", SAND), ("2", WATER), ("3", WALL), ("4", EMPTY)):
        assert app.step(state, InputEvent("key", key)).material == material
    # The bar under the grid: four swatches, left to right empty, sand, water, wall.
    for x, material in ((10, EMPTY), (200, SAND), (300, WATER), (511, WALL)):
        assert app.step(state, InputEvent("pointer", x=x, y=390, buttons=1)).material == material


def test_seeded_runs_are_deterministic() -> None:
    events = [None] * 5 + [InputEvent("pointer", x=100, y=40, buttons=1)] + [None] * 30
    a, b = Sand(), Sand()
    sa, sb, sc = a.reset(5), b.reset(5), a.reset(6)
    for e in events:
        sa, sb, sc = a.step(sa, e), b.step(sb, e), a.step(sc, e)
    assert sa == sb and sa != sc


def test_render() -> None:
    app = Sand()
    assert (Sand.width, Sand.height, Sand.tick_hz) == (512, 400, 30.0)
    state = app.reset(2)
    fb = app.render(state)
    assert fb.shape == (400, 512, 3) and fb.dtype == np.uint8
    g = state.grid()
    y, x = (int(v) for v in np.argwhere(g == SAND)[0])
    block = fb[4 * y : 4 * y + 4, 4 * x : 4 * x + 4]
    assert (block == fb[4 * y, 4 * x]).all()
    assert zlib.crc32(app.render(state).tobytes()) == zlib.crc32(Sand().render(state).tobytes())
    water = app.render(app.select(state, WATER))
    assert not np.array_equal(water[384:], fb[384:]) and np.array_equal(water[:384], fb[:384])
