"""Reference decoders: the straightforward per-tile paths the fast ones must match.

::

    raw ─► unpack_tiles_reference ─► [(index, encoding, data)] ─► ReferenceFrameDecoder.apply
           one varint at a time         one tuple per tile          one tile at a time:
                                                                    ref/insert, then put

``packed.unpack_tiles`` and ``frames.FrameDecoder`` vectorize these; tests and
``bench/display_decode.py`` hold them to identical tiles, pictures, dictionary
states and errors.
"""

from __future__ import annotations

import numpy as np

from simulacra.errors import CodecError, PayloadTooBig

from .dictionary import DecoderDictionary
from .encodings import MAX_TILE_DATA, TileEncoding, decode_tile
from .tiles import TileGrid, framebuffer_checksum, tile_table_checksum

__all__ = ["unpack_tiles_reference", "ReferenceFrameDecoder", "check_tiles"]

Tile = tuple[int, int, bytes]

_MAX_SLOT = 1 << 16
_SOLID = int(TileEncoding.SOLID)
_RAW = int(TileEncoding.RAW)
_ZLIB = int(TileEncoding.ZLIB)
_PALETTE_RLE = int(TileEncoding.PALETTE_RLE)
_REF = int(TileEncoding.REF)
_FIXED = {_SOLID: 3, _RAW: 768}
_VARIABLE = (_ZLIB, _PALETTE_RLE)


class _Reader:
    __slots__ = ("data", "at")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def varint(self, limit: int) -> int:
        value = shift = 0
        data = self.data
        while True:
            if self.at >= len(data):
                raise CodecError("packed tiles end inside a number")
            byte = data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            if value > limit:
                raise CodecError(f"packed number past {limit}")
            if byte < 0x80:
                return value
            shift += 7

    def take(self, n: int) -> bytes:
        end = self.at + n
        if end > len(self.data):
            raise CodecError("packed tiles end inside a tile")
        chunk = self.data[self.at : end]
        self.at = end
        return chunk


def unpack_tiles_reference(raw: bytes, count: int, tile_count: int) -> list[Tile]:
    """``packed.unpack_tiles``, one varint and one tuple at a time."""
    if count > tile_count:
        raise PayloadTooBig(f"frame lists {count} tiles; the framebuffer has {tile_count}")
    reader = _Reader(bytes(raw))
    tiles: list[Tile] = []
    previous = -1
    previous_slot = -1
    for _ in range(count):
        index = previous + 1 + reader.varint(tile_count)
        if index >= tile_count:
            raise CodecError(f"tile index {index} outside 0..{tile_count - 1}")
        previous = index
        encoding = reader.take(1)[0]
        if encoding == _REF:
            zigzag = reader.varint(2 * _MAX_SLOT)
            slot = previous_slot + 1 + (zigzag >> 1 if not zigzag & 1 else -((zigzag + 1) >> 1))
            if not 0 <= slot < _MAX_SLOT:
                raise CodecError(f"REF slot {slot} outside 0..{_MAX_SLOT - 1}")
            previous_slot = slot
            data = slot.to_bytes(2, "big")
        elif encoding in _FIXED:
            data = reader.take(_FIXED[encoding])
        elif encoding in _VARIABLE:
            length = reader.varint(MAX_TILE_DATA)
            data = reader.take(length)
        else:
            raise CodecError(f"unknown tile encoding {encoding}")
        tiles.append((index, encoding, data))
    if reader.at != len(reader.data):
        raise CodecError(f"{len(reader.data) - reader.at} bytes after the last packed tile")
    return tiles


class ReferenceFrameDecoder:
    """``frames.FrameDecoder``, applying one tile at a time."""

    def __init__(self, width: int, height: int, *, dictionary_slots: int = 4096) -> None:
        self.grid = TileGrid(width, height)
        self.dictionary = DecoderDictionary(dictionary_slots)
        self.framebuffer = np.zeros((height, width, 3), dtype=np.uint8)

    def checksum(self) -> int:
        return framebuffer_checksum(self.framebuffer)

    def table_checksum(self) -> int:
        return tile_table_checksum(self.framebuffer)

    def apply(self, tiles: list[Tile] | tuple[Tile, ...], *, keyframe: bool) -> np.ndarray:
        plan = self._check(tiles, keyframe)
        dictionary = self.dictionary
        if keyframe:
            dictionary.reset()
        use_slots = dictionary.slots > 0
        put = self.grid.put
        fb = self.framebuffer
        for index, pixels, slot in plan:
            if pixels is None:
                pixels = dictionary.ref(slot)
            elif use_slots:
                dictionary.insert(pixels)
            put(fb, index, pixels)
        return fb

    def _check(
        self, tiles: list[Tile] | tuple[Tile, ...], keyframe: bool
    ) -> list[tuple[int, np.ndarray | None, int]]:
        return check_tiles(self.grid, self.dictionary, tiles, keyframe)


def check_tiles(
    grid: TileGrid,
    dictionary: DecoderDictionary,
    tiles: list[Tile] | tuple[Tile, ...],
    keyframe: bool,
) -> list[tuple[int, np.ndarray | None, int]]:
    """Every tile checked in frame order (first bad one raises): ``(index, pixels, slot)``.

    ``pixels`` is None for a REF; ``slot`` is -1 for the others.
    """
    count = grid.count
    if len(tiles) > count:
        raise PayloadTooBig(f"frame lists {len(tiles)} tiles; the framebuffer has {count}")
    slots = dictionary.slots
    # Filled slots are always 0..filled-1 (see dictionary.py), so tracking the count
    # is enough to tell, before applying anything, whether a REF points at a tile.
    filled = 0 if keyframe else dictionary.lru.filled
    plan: list[tuple[int, np.ndarray | None, int]] = []
    for item in tiles:
        try:
            index, encoding, data = item
        except (TypeError, ValueError):
            raise CodecError("a tile is (index, encoding, data)") from None
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
            raise CodecError(f"tile index {index!r} outside 0..{count - 1}")
        if encoding == _REF and isinstance(encoding, int):
            if not isinstance(data, bytes | bytearray) or len(data) != 2:
                raise CodecError("REF: 2 bytes expected")
            slot = int.from_bytes(data, "big")
            if slot >= filled:
                raise CodecError(f"REF to empty dictionary slot {slot}")
            plan.append((index, None, slot))
        else:
            plan.append((index, decode_tile(encoding, data), -1))
            if filled < slots:
                filled += 1
    if keyframe and len({index for index, _, _ in plan}) != count:
        raise CodecError("a keyframe must list every tile")
    return plan
