"""2048: rules, the row segments over their whole domain, seeded runs, rendering."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from simulacra.apps.base import InputEvent, reference_runner
from simulacra.apps.g2048 import (
    G2048,
    G2048State,
    pack_line,
    replay,
    row_move_left_reference,
    row_score_reference,
    unpack_line,
)

KEYS = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"]


def slide_row(values: list[int]) -> tuple[list[int], int]:
    """Tile values (0 = empty) after a left move, and the points; written as plain loops."""
    tiles = [v for v in values if v]
    out: list[int] = []
    points = 0
    i = 0
    while i < len(tiles):
        if i + 1 < len(tiles) and tiles[i] == tiles[i + 1] and tiles[i] < 32768:
            out.append(tiles[i] * 2)
            points += tiles[i] * 2
            i += 2
        else:
            out.append(tiles[i])
            i += 1
    return out + [0] * (4 - len(out)), points


def as_code(values: list[int]) -> int:
    code = 0
    for i, v in enumerate(values):
        code += (v.bit_length() - 1 if v else 0) * 16**i
    return code


def move_left(values: list[int]) -> tuple[list[int], int]:
    code = np.array([as_code(values)], dtype=np.uint64)
    moved = row_move_left_reference(code)
    score = row_score_reference(code)
    cells = [int(e) for e in unpack_line(moved)[0]]
    return [1 << e if e else 0 for e in cells], int(score[0])


@pytest.mark.parametrize(
    ("row", "expected", "points"),
    [
        ([2, 2, 2, 2], [4, 4, 0, 0], 8),
        ([2, 2, 4, 0], [4, 4, 0, 0], 4),
        ([2, 2, 4, 4], [4, 8, 0, 0], 12),
        ([4, 0, 0, 4], [8, 0, 0, 0], 8),
        ([2, 4, 2, 4], [2, 4, 2, 4], 0),
        ([0, 0, 0, 2], [2, 0, 0, 0], 0),
        ([2, 2, 2, 0], [4, 2, 0, 0], 4),
        ([0, 2, 2, 2], [4, 2, 0, 0], 4),
        ([4, 2, 2, 0], [4, 4, 0, 0], 4),
        ([8, 4, 4, 8], [8, 8, 8, 0], 8),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0),
        ([16384, 16384, 16384, 16384], [32768, 32768, 0, 0], 65536),
        ([32768, 32768, 2, 2], [32768, 32768, 4, 0], 4),
    ],
)
def test_row_move_left_cases(row: list[int], expected: list[int], points: int) -> None:
    assert move_left(row) == (expected, points)


def test_row_segments_over_whole_domain() -> None:
    codes = np.arange(1 << 16, dtype=np.uint64)
    moved = row_move_left_reference(codes)
    score = row_score_reference(codes)
    assert moved.dtype == np.uint64 and score.dtype == np.uint64
    assert int(moved.max()) < 1 << 16 and int(score.max()) < 1 << 17
    for code in range(1 << 16):
        values = [1 << ((code >> (4 * i)) & 15) if (code >> (4 * i)) & 15 else 0 for i in range(4)]
        out, points = slide_row(values)
        assert int(moved[code]) == as_code(out), code
        assert int(score[code]) == points, code


def test_pack_unpack_round_trip() -> None:
    cells = np.array([[1, 0, 15, 3]], dtype=np.uint8)
    assert pack_line(cells).tolist() == [0x3F01]
    assert unpack_line(pack_line(cells)).tolist() == cells.tolist()


def state_with(board: list[int], **kw: object) -> G2048State:
    base = G2048().reset(0)
    fields = {
        "board": tuple(board),
        "score": 0,
        "best": 0,
        "over": False,
        "moves": 0,
        "rng": base.rng,
    }
    fields.update(kw)
    return G2048State(**fields)  # type: ignore[arg-type]


def test_slides_in_four_directions() -> None:
    app = G2048()
    # fmt: off
    grid = np.array([[1, 1, 0, 0],
                     [0, 0, 0, 0],
                     [0, 2, 0, 0],
                     [1, 2, 0, 3]], dtype=np.uint8)
    left = [[2, 0, 0, 0],
            [0, 0, 0, 0],
            [2, 0, 0, 0],
            [1, 2, 3, 0]]
    right = [[0, 0, 0, 2],
             [0, 0, 0, 0],
             [0, 0, 0, 2],
             [0, 1, 2, 3]]
    up = [[2, 1, 0, 3],
          [0, 3, 0, 0],
          [0, 0, 0, 0],
          [0, 0, 0, 0]]
    down = [[0, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 1, 0, 0],
            [2, 3, 0, 3]]
    # fmt: on
    for direction, expected, points in (
        ("left", left, 4),
        ("right", right, 4),
        ("up", up, 12),
        ("down", down, 12),
    ):
        moved, gain = app.slide(grid, direction)
        assert moved.tolist() == expected, direction
        assert gain == points, direction
    assert app.slide(np.array(left, dtype=np.uint8), "left")[1] is None


@pytest.mark.parametrize(
    ("key", "direction"),
    [
        ("ArrowLeft", "left"),
        ("a", "left"),
        ("ArrowRight", "right"),
        ("d", "right"),
        ("ArrowUp", "up"),
        ("w", "up"),
        ("ArrowDown", "down"),
        ("s", "down"),
    ],
)
def test_keys_map_to_directions(key: str, direction: str) -> None:
    app = G2048()
    state = state_with([1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0])
    assert app.step(state, InputEvent("key", key)) == app.move(state, direction)
    assert app.step(state, InputEvent("key", key)) != state


def test_spawn_only_after_changing_move() -> None:
    app = G2048()
    board = [1, 0, 0, 0] + [0] * 12
    state = state_with(board)
    assert app.move(state, "left") is state  # nothing moved: no spawn, same state
    moved = app.move(state, "right")
    assert sum(1 for v in moved.board if v) == 2
    assert moved.board[3] == 1 and moved.moves == 1
    assert set(moved.board) <= {0, 1, 2}


def test_score_accumulates_and_best_tracks() -> None:
    app = G2048()
    state = state_with([2, 2, 1, 1] + [0] * 12, score=10, best=12)
    after = app.move(state, "left")
    assert after.score == 10 + 8 + 4 and after.best == 22
    assert after.board[:2] == (3, 2)


def test_game_over_and_restart() -> None:
    app = G2048()
    # fmt: off
    almost = [1, 2, 1, 2,
              2, 1, 2, 1,
              1, 2, 1, 2,
              2, 1, 3, 3]
    stuck_board = almost[:14] + [4, 3]
    # fmt: on
    state = state_with(almost, score=0, best=0)
    after = app.move(state, "up")
    assert after is state  # no column moves
    state = state_with([0] + almost[1:])
    after = app.step(state, InputEvent("key", "ArrowLeft"))
    assert not after.over
    stuck = state_with(stuck_board)
    assert app._stuck(stuck.grid())
    over = state_with(stuck_board, over=True, score=40, best=40)
    assert app.step(over, InputEvent("key", "ArrowLeft")) is over
    for key in ("r", "Enter"):
        fresh = app.step(over, InputEvent("key", key))
        assert not fresh.over and fresh.score == 0 and fresh.best == 40
        assert sum(1 for v in fresh.board if v) == 2


def test_ignores_other_events() -> None:
    app = G2048()
    state = app.reset(3)
    assert app.step(state, None) is state
    assert app.step(state, InputEvent("key", "x")) is state
    assert app.step(state, InputEvent("pointer", x=5, y=5, buttons=1)) is state


def random_keys(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [KEYS[int(k)] for k in rng.integers(0, 4, size=n)]


def test_seeded_runs_are_deterministic() -> None:
    keys = random_keys(7, 200)
    a = replay(G2048(), 42, keys)
    b = replay(G2048(), 42, keys)
    c = replay(G2048(), 43, keys)
    assert a == b
    assert a != c
    assert G2048().reset(42) == G2048().reset(42)
    # Pinned: numpy's PCG64 stream and our spawn order (cell, then 2-or-4).
    assert G2048().reset(0).board == (0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0)


def run_checksums(app: G2048, seed: int, keys: list[str]) -> list[int]:
    state = app.reset(seed)
    sums = [zlib.crc32(app.render(state).tobytes())]
    for key in keys:
        state = app.step(state, InputEvent("key", key))
        sums.append(zlib.crc32(app.render(state).tobytes()))
    return sums


def test_render_shape_and_determinism() -> None:
    app = G2048()
    fb = app.render(app.reset(1))
    assert fb.shape == (560, 480, 3) and fb.dtype == np.uint8
    assert G2048.width % 16 == 0 and G2048.height % 16 == 0
    keys = random_keys(11, 50)
    first = run_checksums(app, 5, keys)
    assert run_checksums(app, 5, keys) == first  # same instance, warm caches
    assert run_checksums(G2048(), 5, keys) == first  # a fresh instance
    assert len(set(first)) > 10


def test_render_shows_game_over_overlay() -> None:
    app = G2048()
    board = [1, 2, 1, 2, 2, 1, 2, 1, 1, 2, 1, 2, 2, 1, 4, 2]
    playing = app.render(state_with(board))
    over = app.render(state_with(board, over=True))
    assert not np.array_equal(playing[80:], over[80:])
    assert np.array_equal(playing[:80], over[:80])


class CountingRunner(dict):
    def __init__(self) -> None:
        super().__init__()
        self.calls = {s.name: 0 for s in G2048.segments}
        self.inputs = {s.name: 0 for s in G2048.segments}
        for name, fn in reference_runner(G2048.segments).items():
            self[name] = self._counted(name, fn)

    def _counted(self, name, fn):  # type: ignore[no-untyped-def]
        def call(codes: np.ndarray) -> np.ndarray:
            self.calls[name] += 1
            self.inputs[name] += len(codes)
            return fn(codes)

        return call


def test_moves_and_text_go_through_the_runner() -> None:
    runner = CountingRunner()
    app = G2048(runner)
    state = app.reset(9)
    assert runner.calls["row_move_left"] == 0
    for key in KEYS:
        state = app.step(state, InputEvent("key", key))
    assert runner.calls["row_move_left"] >= 1 and runner.calls["row_score"] >= 1
    app.render(state)
    first = runner.calls["glyph"]
    assert first >= 3  # title, labels, score digits, tiles
    app.render(state)
    assert runner.calls["glyph"] == first  # nothing new on screen: all cached
    # A score never shown before needs the glyph segment again, for exactly that string.
    before = runner.inputs["glyph"]
    app.render(state_with(list(state.board), score=987654, best=987654))
    assert runner.calls["glyph"] == first + 1
    assert runner.inputs["glyph"] - before == 6 * 32 * 32


def test_a_different_segment_changes_the_game() -> None:
    """Moves really come from the runner: an identity segment means no tile ever moves."""
    runner = reference_runner(G2048.segments)
    runner["row_move_left"] = lambda codes: np.asarray(codes, dtype=np.uint64).copy()
    state = state_with([1, 0, 0, 2] + [0] * 12)
    assert G2048(runner).move(state, "left") is state
    assert G2048().move(state, "left").board[:2] == (1, 2)
