import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulacra.codecs.display import TILE, TILE_BYTES, TileGrid, framebuffer_checksum, tile_hash
from simulacra.errors import CodecError


def test_constants():
    assert TILE == 16
    assert TILE_BYTES == 768


def test_checksum_is_unsigned_crc32_of_the_bytes():
    fb = np.arange(32 * 48 * 3, dtype=np.uint32).astype(np.uint8).reshape(32, 48, 3)
    assert framebuffer_checksum(fb) == zlib.crc32(fb.tobytes())
    assert framebuffer_checksum(np.zeros((16, 16, 3), np.uint8)) == zlib.crc32(bytes(768))


def test_tile_hash_is_16_bytes_and_content_keyed():
    assert len(tile_hash(bytes(768))) == 16
    assert tile_hash(bytes(768)) == tile_hash(bytearray(768))
    assert tile_hash(bytes(768)) != tile_hash(b"\x01" + bytes(767))


@pytest.mark.parametrize("size", [(0, 16), (16, 0), (17, 16), (16, 24), (-16, 16), (16.0, 16)])
def test_grid_rejects_sizes_not_multiple_of_16(size):
    with pytest.raises(CodecError):
        TileGrid(*size)


def test_grid_layout():
    grid = TileGrid(64, 32)
    assert (grid.rows, grid.cols, grid.count) == (2, 4, 8)


def test_check_rejects_wrong_shape_and_dtype():
    grid = TileGrid(32, 16)
    with pytest.raises(CodecError):
        grid.check(np.zeros((16, 32, 4), np.uint8))
    with pytest.raises(CodecError):
        grid.check(np.zeros((16, 32, 3), np.int16))
    with pytest.raises(CodecError):
        grid.check(b"\0" * 1536)


def test_changed_lists_touched_tiles_in_ascending_order():
    grid = TileGrid(64, 48)  # 3 rows x 4 cols
    held = np.zeros((48, 64, 3), np.uint8)
    fb = held.copy()
    fb[47, 63, 2] = 1  # tile 11, last byte
    fb[0, 0, 0] = 1  # tile 0, first byte
    fb[20, 15:17] = 9  # straddles tiles 4 and 5
    assert grid.changed(fb, held).tolist() == [0, 4, 5, 11]
    assert grid.changed(held, held).tolist() == []


def test_changed_works_on_a_non_contiguous_input_after_check():
    grid = TileGrid(32, 16)
    base = np.zeros((16, 64, 3), np.uint8)
    base[:, 40] = 5  # x=40 is in the second tile of the strided view below
    fb = grid.check(base[:, ::2])
    assert grid.changed(fb, np.zeros((16, 32, 3), np.uint8)).tolist() == [1]


@given(st.data())
def test_gather_and_scatter_round_trip(data):
    rows, cols = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    grid = TileGrid(cols * 16, rows * 16)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    fb = rng.integers(0, 256, (rows * 16, cols * 16, 3), dtype=np.uint8)
    picked = sorted(data.draw(st.sets(st.integers(0, grid.count - 1))))
    indices = np.array(picked, dtype=np.int64)
    tiles = grid.gather(fb, indices)
    assert tiles.shape == (len(picked), 768)
    for k, index in enumerate(picked):
        r, c = divmod(index, cols)
        assert tiles[k].tobytes() == fb[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16].tobytes()
    out = np.zeros_like(fb)
    grid.scatter(out, indices, tiles)
    for index in range(grid.count):
        r, c = divmod(index, cols)
        block = out[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16]
        expect = fb[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16] if index in picked else 0
        assert (block == expect).all()
    assert grid.changed(out, fb).tolist() == [i for i in range(grid.count) if i not in picked]
