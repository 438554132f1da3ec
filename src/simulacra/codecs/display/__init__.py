"""Display deltas: dirty 16x16 tiles, tile encodings and the client's tile dictionary.

::

    app framebuffer ─► FrameEncoder (per client) ─► [(index, encoding, data)] ─► Frame
                         │  diff vs client's copy        ▲
                         │  dictionary hit ─► REF slot   │ shared TileEncodeCache:
                         └─ miss ─► insert ─► cache ─────┘ each unique tile encoded once
    Frame ─► FrameDecoder ─► framebuffer (bit-exact), checksum() == Frame.checksum

Packed mode: ``packed.py`` turns a tile list into bytes of one deflate stream per
connection (``PackedFrame``).

Wire layout of every encoding: docs/protocol.md, "Frames and tiles".
"""

from __future__ import annotations

from .cache import TileEncodeCache
from .dictionary import DecoderDictionary, EncoderDictionary, SlotLru
from .encodings import MAX_TILE_DATA, TileEncoding, decode_tile, decode_tiles, encode_tile
from .frames import FrameDecoder, FrameEncoder, Tile
from .packed import (
    DEFLATE_STREAM_BYTES,
    MAX_PACKED_BYTES,
    DeflateStream,
    InflateStream,
    PackedTiles,
    pack_tiles,
    unpack_tiles,
)
from .tiles import (
    TILE,
    TILE_BYTES,
    TileGrid,
    TileTable,
    framebuffer_checksum,
    tile_hash,
    tile_table_checksum,
)

__all__ = [
    "TILE",
    "TILE_BYTES",
    "MAX_TILE_DATA",
    "Tile",
    "TileEncoding",
    "TileGrid",
    "TileTable",
    "framebuffer_checksum",
    "tile_table_checksum",
    "tile_hash",
    "encode_tile",
    "decode_tile",
    "decode_tiles",
    "TileEncodeCache",
    "SlotLru",
    "EncoderDictionary",
    "DecoderDictionary",
    "FrameEncoder",
    "FrameDecoder",
    "MAX_PACKED_BYTES",
    "pack_tiles",
    "unpack_tiles",
    "PackedTiles",
    "DeflateStream",
    "InflateStream",
    "DEFLATE_STREAM_BYTES",
]
