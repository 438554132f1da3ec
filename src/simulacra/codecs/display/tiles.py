"""Tile geometry: split a framebuffer into 16x16 tiles and find the changed ones.

::

    fb (H, W, 3) uint8 ──view──► (rows, 16, cols, 48) bytes ──view──► (rows, 16, cols, 6) uint64
                                                                        │ != held, any over 1 then 3
                                                                        ▼
                                               changed (rows, cols) bool ─► flat indices, ascending

Tile ``index = row * cols + col``. A 16-pixel tile row is 48 bytes, i.e. six
64-bit words, so the diff compares words instead of bytes and touches no
Python per tile.

The tile-table checksum (packed mode's frame checksum) is kept up to date
tile by tile, so a frame costs the tiles it changed, not the whole picture::

    tile i ─► its 768 RAW bytes ─► CRC-32 ─► table[i]    (uint32, big-endian)
    checksum = CRC-32 of the table (count * 4 bytes, tile index order)
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

from simulacra.errors import CodecError

__all__ = [
    "TILE",
    "TILE_BYTES",
    "TileGrid",
    "TileTable",
    "framebuffer_checksum",
    "tile_table_checksum",
    "tile_hash",
]

TILE = 16
TILE_BYTES = TILE * TILE * 3  # 768: one RAW tile
_ROW_BYTES = TILE * 3  # 48 bytes of one tile row
_ROW_WORDS = _ROW_BYTES // 8  # 6 uint64 words
_ROW_ITEM = np.dtype(f"V{_ROW_BYTES}")  # one tile row as a single opaque item
_MAX_SIDE = 1 << 15  # no framebuffer is this large; keeps allocations sane


def framebuffer_checksum(fb: np.ndarray) -> int:
    """CRC-32 of the framebuffer's bytes (``height*width*3``), unsigned."""
    return zlib.crc32(np.ascontiguousarray(fb, dtype=np.uint8).data) & 0xFFFFFFFF


def tile_table_checksum(fb: np.ndarray) -> int:
    """The tile-table checksum of ``fb`` computed from scratch (see the module diagram)."""
    fb = np.ascontiguousarray(fb, dtype=np.uint8)
    grid = TileGrid(fb.shape[1], fb.shape[0])
    table = TileTable(grid)
    table.update(fb, np.arange(grid.count))
    return table.checksum()


def tile_hash(tile: bytes) -> bytes:
    """16-byte content hash of a tile's RAW bytes (dictionary and cache key)."""
    return hashlib.blake2b(tile, digest_size=16).digest()


class TileGrid:
    """The tile layout of a ``width`` x ``height`` framebuffer."""

    __slots__ = ("width", "height", "rows", "cols", "count", "_row_index", "_col_index")

    def __init__(self, width: int, height: int) -> None:
        for name, side in (("width", width), ("height", height)):
            if not isinstance(side, int) or side <= 0 or side % TILE or side > _MAX_SIDE:
                raise CodecError(
                    f"framebuffer {name} must be a positive multiple of 16, got {side!r}"
                )
        self.width = width
        self.height = height
        self.rows = height // TILE
        self.cols = width // TILE
        self.count = self.rows * self.cols
        self._row_index = np.arange(TILE)[None, :]

    def check(self, fb: np.ndarray) -> np.ndarray:
        """``fb`` as a C-contiguous uint8 (H, W, 3) array, or CodecError."""
        if not isinstance(fb, np.ndarray) or fb.dtype != np.uint8:
            raise CodecError("framebuffer must be a numpy uint8 array")
        if fb.shape != (self.height, self.width, 3):
            raise CodecError(f"framebuffer shape {fb.shape} != ({self.height}, {self.width}, 3)")
        return np.ascontiguousarray(fb)

    def _rows_view(self, fb: np.ndarray) -> np.ndarray:
        # (rows, 16, cols, 48): axis 0/2 pick a tile, axis 1/3 walk inside it.
        return fb.reshape(self.rows, TILE, self.cols, _ROW_BYTES)

    def changed(self, fb: np.ndarray, held: np.ndarray) -> np.ndarray:
        """Indices (ascending, int64) of the tiles where ``fb`` and ``held`` differ."""
        a = fb.reshape(self.height, -1).view(np.uint64)
        b = held.reshape(self.height, -1).view(np.uint64)
        # Reduce the 16 rows first (contiguous inner axis, vectorizes well), then the
        # 6 words of each tile row; one any() over axes (1, 3) is ~5x slower.
        words = (a != b).reshape(self.rows, TILE, self.cols * _ROW_WORDS).any(axis=1)
        return np.flatnonzero(words.reshape(self.rows, self.cols, _ROW_WORDS).any(axis=2))

    def gather(self, fb: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """The tiles at ``indices`` as an (n, 768) uint8 array of RAW tile bytes."""
        rows, cols = np.divmod(np.asarray(indices, dtype=np.intp), self.cols)
        if not fb.flags.c_contiguous:
            tiles = self._rows_view(fb)[rows[:, None], self._row_index, cols[:, None], :]
            return tiles.reshape(len(indices), TILE_BYTES)
        # Whole 48-byte tile rows as items, as in ``scatter``: ~1.5x faster.
        at = ((rows * TILE)[:, None] + self._row_index) * self.cols + cols[:, None]
        items = fb.reshape(-1).view(_ROW_ITEM)[at.reshape(-1)]
        return items.view(np.uint8).reshape(len(indices), TILE_BYTES)

    def scatter(self, fb: np.ndarray, indices: np.ndarray, tiles: np.ndarray) -> None:
        """Write (n, 768) ``tiles`` into ``fb`` at distinct ``indices``."""
        rows, cols = np.divmod(np.asarray(indices, dtype=np.intp), self.cols)
        if not fb.flags.c_contiguous:
            view = self._rows_view(fb)
            view[rows[:, None], self._row_index, cols[:, None], :] = tiles.reshape(
                -1, TILE, _ROW_BYTES
            )
            return
        # fb as one 48-byte item per tile row: row y of tile (r, c) is item
        # (r*16 + y)*cols + c. One index on one axis of whole items: ~2.5x faster
        # than the 4-axis fancy index above.
        at = ((rows * TILE)[:, None] + self._row_index) * self.cols + cols[:, None]
        items = np.ascontiguousarray(tiles, dtype=np.uint8).reshape(-1).view(_ROW_ITEM)
        fb.reshape(-1).view(_ROW_ITEM)[at.reshape(-1)] = items

    def put(self, fb: np.ndarray, index: int, tile: np.ndarray) -> None:
        """Write one tile (768 uint8) into ``fb`` at ``index``."""
        row, col = divmod(index, self.cols)
        y, x = row * TILE, col * TILE
        fb[y : y + TILE, x : x + TILE] = tile.reshape(TILE, TILE, 3)


_BLACK_TILE_CRC = zlib.crc32(bytes(TILE_BYTES))
AUDIT_FRAMES = 32  # a decoder re-reads every tile of its picture at least this often


class TileTable:
    """Per-tile CRC-32s of one framebuffer, and the tile-table checksum over them.

    Starts as the table of an all-black picture (both sides start from black).
    ``update`` hashes the given tiles again from the framebuffer; ``audit`` also
    re-reads the next window of a rotation through every tile, so a table can
    never go on vouching for pixels that changed behind its back: such a change
    reaches the checksum within ``AUDIT_FRAMES`` calls.
    """

    __slots__ = ("grid", "table", "_audit_at", "_audit_step")

    def __init__(self, grid: TileGrid) -> None:
        self.grid = grid
        self.table = np.full(grid.count, _BLACK_TILE_CRC, dtype=">u4")
        self._audit_at = 0
        self._audit_step = max(1, -(-grid.count // AUDIT_FRAMES))

    def update(self, fb: np.ndarray, indices: np.ndarray) -> None:
        """Hash the tiles at ``indices`` (any order, repeats allowed) of ``fb`` again."""
        if len(indices):
            tiles = self.grid.gather(fb, np.asarray(indices, dtype=np.intp))
            self.table[indices] = list(map(zlib.crc32, tiles))

    def audit(self, fb: np.ndarray) -> None:
        """Hash the next ``count / AUDIT_FRAMES`` tiles of the rotation again."""
        start = self._audit_at
        window = np.arange(start, start + self._audit_step) % self.grid.count
        self._audit_at = (start + self._audit_step) % self.grid.count
        self.update(fb, window)

    def reset(self, fb: np.ndarray) -> None:
        """Hash every tile of ``fb``."""
        self.update(fb, np.arange(self.grid.count))

    def checksum(self) -> int:
        return zlib.crc32(self.table.data)

    @property
    def nbytes(self) -> int:
        return self.table.nbytes
