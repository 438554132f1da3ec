"""Packed tile lists and the per-connection deflate stream of ``PackedFrame``.

::

    server (one per encoder group)                        client (one per connection)
    tiles ─► pack_tiles ─► raw ─► DeflateStream.compress   InflateStream.inflate(data, size)
             varint index gap,    (persistent zlib stream,   ─► raw (exactly size bytes)
             encoding byte,       Z_SYNC_FLUSH per frame) ─►    ─► unpack_tiles ─► tiles
             payload              data ─── PackedFrame ───►       ─► FrameDecoder.apply

    per tile:  gap (varint) | encoding (1 byte) | payload
               gap = index - previous index - 1 (the first tile: index itself)
               SOLID: 3 bytes   RAW: 768 bytes   ZLIB, PALETTE_RLE: length (varint), data
               REF: slot delta (zigzag varint) = slot - (previous REF slot + 1), first: slot + 1

    keyframe ─► both sides start a new zlib stream; a frame without tiles (size 0)
                carries no data and leaves the stream as it is

``unpack_tiles`` returns ``PackedTiles``: the tile list plus the columns
``FrameDecoder.apply`` works from (indices, slots, non-REF payloads), so the
decoder neither re-checks nor re-walks the tuples. ``reference.py`` keeps the
one-tile-at-a-time versions both are tested against.

Moved content (2048's cells) is a run of REFs to consecutive slots at
consecutive indices, i.e. the bytes ``00 04 00`` repeated, and the stream's
history across frames catches slot sequences seen before. Decoding checks
every length and limit: ``CodecError`` for malformed bytes, ``PayloadTooBig``
past a size limit.
"""

from __future__ import annotations

import functools
import zlib

from simulacra.errors import CodecError, PayloadTooBig

from .encodings import MAX_TILE_DATA, TileEncoding, decode_tile, palette_rle
from .tiles import TILE_BYTES

__all__ = [
    "MAX_PACKED_BYTES",
    "pack_tiles",
    "unpack_tiles",
    "PackedTiles",
    "DeflateStream",
    "InflateStream",
    "DEFLATE_STREAM_BYTES",
]

# The uncompressed tile list of one frame; as large as the biggest Frame message,
# so whatever fits in tiles mode fits here (packing is never larger than msgpack).
MAX_PACKED_BYTES = 1 << 20
_MAX_SLOT = 1 << 16
# zlib's documented deflate memory for windowBits 15, memLevel 9:
# (1 << (15 + 2)) + (1 << (9 + 9)), plus a few KiB of state
DEFLATE_STREAM_BYTES = (1 << 17) + (1 << 18) + 8192

_SOLID = int(TileEncoding.SOLID)
_RAW = int(TileEncoding.RAW)
_ZLIB = int(TileEncoding.ZLIB)
_PALETTE_RLE = int(TileEncoding.PALETTE_RLE)
_REF = int(TileEncoding.REF)
_FIXED = {_SOLID: 3, _RAW: TILE_BYTES}  # payload bytes of the fixed-size encodings
_VARIABLE = (_ZLIB, _PALETTE_RLE)

Tile = tuple[int, int, bytes]


def _varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


# Every encoder group packs the same ZLIB tiles (the encode cache hands out one
# bytes object per content), so the repacking is remembered: 1,024 entries hold
# at most ~3.4 MB (2 KiB of zlib data and a 1,278-byte palette each).
@functools.lru_cache(maxsize=1024)
def _unzlib(data: bytes) -> tuple[int, bytes]:
    """A ZLIB tile as PALETTE_RLE (or RAW): the stream compresses those across tiles."""
    pixels = decode_tile(_ZLIB, data)
    palette = palette_rle(pixels)
    return (_RAW, pixels.tobytes()) if palette is None else (_PALETTE_RLE, palette)


def pack_tiles(tiles: list[Tile] | tuple[Tile, ...]) -> bytes:
    """The packed list of ``tiles`` (indices strictly ascending, as encoders emit them).

    ZLIB tiles are repacked as PALETTE_RLE or RAW (same pixels): per-tile zlib
    output is noise to the stream, while palettes and runs repeat across tiles
    (measured on 2048: 705 instead of 1080 bytes per move).
    """
    out = bytearray()
    previous = -1
    previous_slot = -1
    for index, encoding, data in tiles:
        if index <= previous:
            raise CodecError(f"packed tiles need ascending indices: {index} after {previous}")
        _varint(out, index - previous - 1)
        previous = index
        if encoding == _ZLIB:
            encoding, data = _unzlib(bytes(data))
        out.append(encoding)
        if encoding == _REF:
            if len(data) != 2:
                raise CodecError("REF: 2 bytes expected")
            slot = int.from_bytes(data, "big")
            delta = slot - previous_slot - 1
            _varint(out, delta * 2 if delta >= 0 else -delta * 2 - 1)
            previous_slot = slot
        elif encoding in _FIXED:
            if len(data) != _FIXED[encoding]:
                raise CodecError(f"encoding {encoding}: {_FIXED[encoding]} bytes expected")
            out += data
        elif encoding in _VARIABLE:
            if len(data) > MAX_TILE_DATA:
                raise PayloadTooBig(f"tile data of {len(data)} bytes, limit {MAX_TILE_DATA}")
            _varint(out, len(data))
            out += data
        else:
            raise CodecError(f"unknown tile encoding {encoding}")
    if len(out) > MAX_PACKED_BYTES:
        raise PayloadTooBig(f"packed tiles are {len(out)} bytes, limit {MAX_PACKED_BYTES}")
    return bytes(out)


class PackedTiles(list):  # type: ignore[type-arg]
    """The tiles of a packed list (a read-only ``list[Tile]``) plus what the decoder needs.

    ``indices`` (strictly ascending), ``slots`` (the REF slot, -1 for others) and
    ``payloads`` (``(encoding, data)`` of each non-REF tile, in order) let
    ``FrameDecoder.apply`` skip walking the tuples. Read-only, so they cannot drift apart.
    """

    __slots__ = ("indices", "slots", "payloads")

    indices: list[int]
    slots: list[int]
    payloads: list[tuple[int, bytes]]


def _read_only(self: PackedTiles, *args: object, **kwargs: object) -> None:
    raise TypeError("PackedTiles is read-only")


for _name in (
    "__setitem__",
    "__delitem__",
    "__iadd__",
    "__imul__",
    "append",
    "extend",
    "insert",
    "pop",
    "remove",
    "clear",
    "sort",
    "reverse",
):
    setattr(PackedTiles, _name, _read_only)
del _name


def _read_varint(data: bytes, at: int, limit: int) -> tuple[int, int]:
    """The varint at ``data[at:]`` and the offset after it (the multi-byte path)."""
    value = shift = 0
    n = len(data)
    while True:
        if at >= n:
            raise CodecError("packed tiles end inside a number")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if value > limit:
            raise CodecError(f"packed number past {limit}")
        if byte < 0x80:
            return value, at
        shift += 7


def unpack_tiles(raw: bytes, count: int, tile_count: int) -> PackedTiles:
    """The ``count`` tiles packed in ``raw`` (every byte used) of a ``tile_count``-tile frame.

    REF payloads come back as 2-byte slots, so ``FrameDecoder.apply`` sees the
    tiles a Frame would have carried and checks them the same way.
    """
    if count > tile_count:
        raise PayloadTooBig(f"frame lists {count} tiles; the framebuffer has {tile_count}")
    data = bytes(raw)
    n = len(data)
    indices: list[int] = []
    encodings: list[int] = []
    slots: list[int] = []
    payloads: list[tuple[int, bytes]] = []
    datas: list[bytes] = []
    at = 0
    index = -1
    previous_slot = -1
    # One byte per varint is the common case (gaps, slot deltas and lengths < 128);
    # it reads inline, and only longer varints go through _read_varint. (Runs of
    # REF records through regex and C-level maps measured slower: runs are short.)
    for _ in range(count):
        if at >= n:
            raise CodecError("packed tiles end inside a number")
        gap = data[at]
        if gap < 0x80:
            at += 1
        else:
            gap, at = _read_varint(data, at, tile_count)
        index += 1 + gap
        if index >= tile_count:
            if gap > tile_count:
                raise CodecError(f"packed number past {tile_count}")
            raise CodecError(f"tile index {index} outside 0..{tile_count - 1}")
        if at >= n:
            raise CodecError("packed tiles end inside a tile")
        encoding = data[at]
        at += 1
        if encoding == _REF:
            if at >= n:
                raise CodecError("packed tiles end inside a number")
            zigzag = data[at]
            if zigzag < 0x80:
                at += 1
            elif at + 1 < n and data[at + 1] < 0x80:  # two bytes: far slot jumps
                zigzag = (zigzag & 0x7F) | data[at + 1] << 7
                at += 2
            else:
                zigzag, at = _read_varint(data, at, 2 * _MAX_SLOT)
            slot = previous_slot + 1 + (-((zigzag + 1) >> 1) if zigzag & 1 else zigzag >> 1)
            if not 0 <= slot < _MAX_SLOT:
                raise CodecError(f"REF slot {slot} outside 0..{_MAX_SLOT - 1}")
            previous_slot = slot
            chunk = slot.to_bytes(2, "big")
        else:
            if encoding == _SOLID:
                length = 3
            elif encoding == _RAW:
                length = TILE_BYTES
            elif encoding in _VARIABLE:
                if at >= n:
                    raise CodecError("packed tiles end inside a number")
                length = data[at]
                if length < 0x80:
                    at += 1
                else:
                    length, at = _read_varint(data, at, MAX_TILE_DATA)
            else:
                raise CodecError(f"unknown tile encoding {encoding}")
            end = at + length
            if end > n:
                raise CodecError("packed tiles end inside a tile")
            chunk = data[at:end]
            at = end
            slot = -1
            payloads.append((encoding, chunk))
        indices.append(index)
        encodings.append(encoding)
        slots.append(slot)
        datas.append(chunk)
    if at != n:
        raise CodecError(f"{n - at} bytes after the last packed tile")
    tiles = PackedTiles(zip(indices, encodings, datas, strict=True))
    tiles.indices = indices
    tiles.slots = slots
    tiles.payloads = payloads
    return tiles


class DeflateStream:
    """Server side: one zlib stream (RFC 1950) per encoder group, a sync flush per frame.

    Copy it (``copy()``) when a group forks: both halves then continue the same
    stream for their own viewers. Holds ``nbytes`` (zlib's state), whatever it compresses.
    """

    nbytes = DEFLATE_STREAM_BYTES

    __slots__ = ("_z", "bytes_in", "bytes_out")

    def __init__(self) -> None:
        self._z = self._new()
        self.bytes_in = 0
        self.bytes_out = 0

    @staticmethod
    def _new() -> zlib._Compress:
        # level 9, 32 KiB window, memLevel 9: most history for the repeats across frames
        return zlib.compressobj(9, zlib.DEFLATED, 15, 9)

    def compress(self, raw: bytes, *, keyframe: bool) -> bytes:
        """The next chunk of the stream, ending on a byte boundary (sync flush)."""
        if len(raw) > MAX_PACKED_BYTES:
            raise PayloadTooBig(f"packed tiles are {len(raw)} bytes, limit {MAX_PACKED_BYTES}")
        if keyframe:
            self._z = self._new()
        if not raw:
            return b""  # nothing to say: the stream stays where it is
        data = self._z.compress(raw) + self._z.flush(zlib.Z_SYNC_FLUSH)
        self.bytes_in += len(raw)
        self.bytes_out += len(data)
        return data

    def copy(self) -> DeflateStream:
        twin = DeflateStream.__new__(DeflateStream)
        twin._z = self._z.copy()
        twin.bytes_in = self.bytes_in
        twin.bytes_out = self.bytes_out
        return twin


class InflateStream:
    """Client side: the matching decompressor; each chunk must inflate to exactly ``size``."""

    __slots__ = ("_z", "_started")

    def __init__(self) -> None:
        self._z = zlib.decompressobj(15)
        self._started = False

    def inflate(self, data: bytes, size: int, *, keyframe: bool) -> bytes:
        """The ``size`` raw bytes of one frame's chunk; a keyframe starts a new stream.

        The stream is broken after any error; the client asks for a keyframe.
        """
        if not 0 <= size <= MAX_PACKED_BYTES:
            raise PayloadTooBig(f"packed tiles of {size} bytes, limit {MAX_PACKED_BYTES}")
        if keyframe:
            self._z = zlib.decompressobj(15)
            self._started = True
        if size == 0:
            if data:
                raise CodecError("a frame without tiles carries no stream data")
            return b""
        if not self._started:
            raise CodecError("packed data before the first keyframe")
        try:
            return self._inflate(data, size)
        except (CodecError, PayloadTooBig):
            self._started = False  # the stream's state is unknown now
            raise

    def _inflate(self, data: bytes, size: int) -> bytes:
        z = self._z
        try:
            raw = z.decompress(data, size)
            # The sync-flush marker yields no output but may still wait in the tail.
            if z.unconsumed_tail and z.decompress(z.unconsumed_tail, 1):
                raise PayloadTooBig(f"packed chunk inflates past its declared {size} bytes")
        except zlib.error as exc:
            raise CodecError(f"packed stream: {exc}") from None
        if z.eof or z.unconsumed_tail or z.unused_data:
            raise CodecError("packed stream ended or carries extra bytes")
        if len(raw) != size:
            raise CodecError(f"packed chunk inflates to {len(raw)} bytes, declared {size}")
        return raw
