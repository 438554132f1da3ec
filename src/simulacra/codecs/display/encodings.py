"""Tile encodings: one 16x16 RGB tile <-> (encoding id, data bytes).

::

    768 RAW bytes ─► pixel keys (r<<16|g<<8|b) ─┬─ one colour?  ─► SOLID        r g b
                                                ├─ <= 255?      ─► PALETTE_RLE  n, palette, runs
                                                ├─ always       ─► ZLIB         zlib(RAW)
                                                └─ always       ─► RAW          768 bytes
                                                   smallest wins (ties: the order above)

    PALETTE_RLE data:  n | n x (r g b) | (run-1, index) x runs      runs cover 256 pixels
                       palette in order of first appearance, row-major

REF (a 2-byte big-endian dictionary slot) is chosen by the frame encoder, not
here. Decoding validates everything and never inflates past one tile.
"""

from __future__ import annotations

import zlib
from enum import IntEnum

import numpy as np

from simulacra.errors import CodecError, PayloadTooBig

from .tiles import TILE_BYTES

__all__ = [
    "TileEncoding",
    "MAX_TILE_DATA",
    "ZLIB_LEVEL",
    "encode_tile",
    "decode_tile",
    "decode_tiles",
    "palette_rle",
]

ZLIB_LEVEL = 6
# Largest data any encoder of ours emits is PALETTE_RLE with 255 colours and 256
# runs (1 + 765 + 512 = 1278); zlib of incompressible RAW is ~780. Refuse more.
MAX_TILE_DATA = 2048
_PIXELS = TILE_BYTES // 3


class TileEncoding(IntEnum):
    SOLID = 0
    RAW = 1
    ZLIB = 2
    PALETTE_RLE = 3
    REF = 4


_SOLID = int(TileEncoding.SOLID)
_RAW = int(TileEncoding.RAW)
_ZLIB = int(TileEncoding.ZLIB)
_PALETTE_RLE = int(TileEncoding.PALETTE_RLE)


def _keys(pixels: np.ndarray) -> np.ndarray:
    p = pixels.astype(np.uint32)
    return (p[:, 0] << 16) | (p[:, 1] << 8) | p[:, 2]


def _palette_rle(pixels: np.ndarray, keys: np.ndarray) -> bytes | None:
    starts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate(([0], starts))
    run_keys = keys[starts]
    _, first, inverse = np.unique(run_keys, return_index=True, return_inverse=True)
    n = len(first)
    if n > 255:
        return None
    # Rank each distinct colour by its first run, so the palette reads in picture order.
    order = np.argsort(first, kind="stable")
    rank = np.empty(n, dtype=np.uint8)
    rank[order] = np.arange(n, dtype=np.uint8)
    runs = np.empty((len(starts), 2), dtype=np.uint8)
    runs[:, 0] = np.diff(np.append(starts, _PIXELS)) - 1
    runs[:, 1] = rank[inverse]
    palette = pixels[starts[first[order]]]
    return bytes((n,)) + palette.tobytes() + runs.tobytes()


def palette_rle(pixels: np.ndarray) -> bytes | None:
    """PALETTE_RLE data of a tile's (256, 3) pixels; None past 255 colours."""
    pixels = pixels.reshape(_PIXELS, 3)
    return _palette_rle(pixels, _keys(pixels))


def encode_tile(tile: bytes) -> tuple[int, bytes]:
    """Smallest encoding of one tile's 768 RAW bytes: ``(encoding id, data)``."""
    if len(tile) != TILE_BYTES:
        raise CodecError(f"a tile is {TILE_BYTES} bytes, got {len(tile)}")
    pixels = np.frombuffer(tile, dtype=np.uint8).reshape(_PIXELS, 3)
    keys = _keys(pixels)
    if (keys == keys[0]).all():
        return _SOLID, bytes(tile[:3])
    best_id, best = _RAW, bytes(tile)
    palette = _palette_rle(pixels, keys)
    if palette is not None and len(palette) < len(best):
        best_id, best = _PALETTE_RLE, palette
    deflated = zlib.compress(tile, ZLIB_LEVEL)
    if len(deflated) < len(best):
        best_id, best = _ZLIB, deflated
    return best_id, best


def _decode_palette_rle(data: bytes) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8)
    n = int(raw[0]) if len(raw) else 0
    if n == 0:
        raise CodecError("PALETTE_RLE: palette size must be 1..255")
    body = raw[1 + 3 * n :]
    if len(raw) < 1 + 3 * n or len(body) == 0 or len(body) % 2:
        raise CodecError(f"PALETTE_RLE: {len(data)} bytes do not hold {n} colours and runs")
    runs = body.reshape(-1, 2)
    lengths = runs[:, 0].astype(np.int64) + 1
    if int(lengths.sum()) != _PIXELS:
        raise CodecError(f"PALETTE_RLE: runs cover {int(lengths.sum())} pixels, not {_PIXELS}")
    indices = runs[:, 1]
    if int(indices.max()) >= n:
        raise CodecError(f"PALETTE_RLE: palette index {int(indices.max())} >= {n}")
    palette = raw[1 : 1 + 3 * n].reshape(n, 3)
    return palette[np.repeat(indices, lengths)].reshape(TILE_BYTES)


def _decode_zlib(data: bytes) -> np.ndarray:
    inflater = zlib.decompressobj()
    try:
        # max_length bounds the output, so a zip bomb stops one byte past a tile.
        out = inflater.decompress(data, TILE_BYTES + 1)
    except zlib.error as exc:
        raise CodecError(f"ZLIB: {exc}") from None
    if len(out) > TILE_BYTES:
        raise PayloadTooBig(f"ZLIB: inflates past {TILE_BYTES} bytes")
    if len(out) != TILE_BYTES or not inflater.eof or inflater.unused_data:
        raise CodecError(f"ZLIB: not one complete stream of {TILE_BYTES} bytes")
    return np.frombuffer(out, dtype=np.uint8)


def decode_tile(encoding: int, data: bytes) -> np.ndarray:
    """The 768 RAW bytes (uint8 array) of a non-REF tile; CodecError if malformed."""
    if not isinstance(encoding, int) or isinstance(encoding, bool):
        raise CodecError(f"tile encoding must be an int, got {type(encoding).__name__}")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"tile data must be bytes, got {type(data).__name__}")
    if len(data) > MAX_TILE_DATA:
        raise PayloadTooBig(f"tile data of {len(data)} bytes is past {MAX_TILE_DATA}")
    if encoding == _SOLID:
        if len(data) != 3:
            raise CodecError(f"SOLID: 3 bytes expected, got {len(data)}")
        return np.tile(np.frombuffer(data, dtype=np.uint8), _PIXELS)
    if encoding == _RAW:
        if len(data) != TILE_BYTES:
            raise CodecError(f"RAW: {TILE_BYTES} bytes expected, got {len(data)}")
        return np.frombuffer(data, dtype=np.uint8)
    if encoding == _ZLIB:
        return _decode_zlib(bytes(data))
    if encoding == _PALETTE_RLE:
        return _decode_palette_rle(bytes(data))
    raise CodecError(f"unknown tile encoding {encoding!r}")


def decode_tiles(payloads: list[tuple[int, bytes]]) -> np.ndarray:
    """``decode_tile`` of each ``(encoding, data)`` as one (k, 768) uint8 array.

    SOLID and PALETTE_RLE tiles decode together, a few numpy calls for all of
    them; a malformed one raises what ``decode_tile`` raises for the first bad tile.
    """
    try:
        return _decode_batch(payloads)
    except (CodecError, PayloadTooBig):
        for encoding, data in payloads:  # the first bad tile, in order
            decode_tile(encoding, data)
        raise


def _decode_batch(payloads: list[tuple[int, bytes]]) -> np.ndarray:
    out = np.empty((len(payloads), TILE_BYTES), dtype=np.uint8)
    solid_rows: list[int] = []
    solids: list[bytes] = []
    palette_rows: list[int] = []
    palettes: list[bytes] = []
    for row, (encoding, data) in enumerate(payloads):
        if type(data) is bytes and type(encoding) is int:
            if encoding == _PALETTE_RLE:
                palette_rows.append(row)
                palettes.append(data)
                continue
            if encoding == _SOLID and len(data) == 3:
                solid_rows.append(row)
                solids.append(data)
                continue
        out[row] = decode_tile(encoding, data)
    if solids:
        rgb = np.frombuffer(b"".join(solids), dtype=np.uint8).reshape(-1, 1, 3)
        out[solid_rows] = np.broadcast_to(rgb, (len(solids), _PIXELS, 3)).reshape(-1, TILE_BYTES)
    if palettes:
        pixels = _palette_rle_batch(palettes)
        if pixels is None:
            raise CodecError("PALETTE_RLE: malformed tile")
        out[palette_rows] = pixels
    return out


def _palette_rle_batch(tiles: list[bytes]) -> np.ndarray | None:
    """(k, 768) pixels of k PALETTE_RLE tiles, or None if any is malformed.

    ::

        tile i:  n | palette (n x 3) | runs (m_i x 2)
        all palettes ─► one (sum n, 3) table; run index + palette offset of its tile
        all runs ─► lengths, table rows ─► np.repeat ─► (k * 256, 3) pixels
    """
    heads: list[bytes] = []
    bodies: list[bytes] = []
    colours: list[int] = []
    runs: list[int] = []
    for data in tiles:
        size = len(data)
        n = data[0] if size else 0
        head = 1 + 3 * n
        if not n or size > MAX_TILE_DATA or size <= head or (size - head) & 1:
            return None
        heads.append(data[1:head])
        bodies.append(data[head:])
        colours.append(n)
        runs.append((size - head) >> 1)
    table = np.frombuffer(b"".join(heads), dtype=np.uint8).reshape(-1, 3)
    body = np.frombuffer(b"".join(bodies), dtype=np.uint8).reshape(-1, 2)
    lengths = body[:, 0].astype(np.intp) + 1
    first = np.zeros(len(tiles), dtype=np.intp)
    np.cumsum(runs[:-1], out=first[1:])
    if (np.add.reduceat(lengths, first) != _PIXELS).any():
        return None
    sizes = np.asarray(colours, dtype=np.intp)
    if (np.maximum.reduceat(body[:, 1], first) >= sizes).any():
        return None
    offsets = np.zeros(len(tiles), dtype=np.intp)
    np.cumsum(sizes[:-1], out=offsets[1:])
    rows = body[:, 1] + np.repeat(offsets, runs)
    return table[np.repeat(rows, lengths)].reshape(len(tiles), TILE_BYTES)
