import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulacra.codecs.display import (
    TILE,
    TILE_BYTES,
    TileGrid,
    TileTable,
    framebuffer_checksum,
    tile_hash,
    tile_table_checksum,
)
from simulacra.codecs.display.tiles import AUDIT_FRAMES
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


def test_tile_table_checksum_is_the_crc_of_the_big_endian_tile_crcs():
    fb = np.random.default_rng(3).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    crcs = [
        zlib.crc32(fb[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16].tobytes())
        for r in range(2)
        for c in range(3)
    ]
    table = b"".join(crc.to_bytes(4, "big") for crc in crcs)
    assert tile_table_checksum(fb) == zlib.crc32(table)
    # A fresh table is the table of a black picture, as both sides start from black.
    assert TileTable(TileGrid(48, 32)).checksum() == tile_table_checksum(np.zeros_like(fb))


def test_tile_table_checksum_sees_tiles_trade_places():
    fb = np.zeros((16, 32, 3), np.uint8)
    fb[:, :16] = 7
    swapped = np.ascontiguousarray(fb[:, ::-1])
    assert tile_table_checksum(fb) != tile_table_checksum(swapped)


@given(st.data())
def test_tile_table_updated_tile_by_tile_equals_the_table_from_scratch(data):
    rows, cols = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    grid = TileGrid(cols * 16, rows * 16)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    fb = np.zeros((rows * 16, cols * 16, 3), np.uint8)
    table = TileTable(grid)
    for _ in range(data.draw(st.integers(1, 5))):
        picked = data.draw(st.lists(st.integers(0, grid.count - 1), max_size=grid.count))
        for index in picked:
            r, c = divmod(index, cols)
            fb[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16] = rng.integers(0, 256, (16, 16, 3))
        table.update(fb, np.array(picked, dtype=np.intp))
        assert table.checksum() == tile_table_checksum(fb)


def test_audit_brings_a_change_behind_the_tables_back_into_the_checksum():
    grid = TileGrid(512, 400)
    fb = np.random.default_rng(4).integers(0, 256, (400, 512, 3), dtype=np.uint8)
    table = TileTable(grid)
    table.reset(fb)
    fb[200, 300] ^= 1  # no update names this tile: only the audit can find it
    assert table.checksum() != tile_table_checksum(fb)
    for _ in range(AUDIT_FRAMES):
        table.audit(fb)
    assert table.checksum() == tile_table_checksum(fb)


def test_tile_table_gathers_from_a_non_contiguous_picture():
    base = np.random.default_rng(6).integers(0, 256, (16, 64, 3), dtype=np.uint8)
    picture = base[:, ::2]
    table = TileTable(TileGrid(32, 16))
    table.update(picture, np.arange(2))
    assert table.checksum() == tile_table_checksum(np.ascontiguousarray(picture))


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
