"""The block codec: one independently decodable piece of a stored file.

::

    raw block (<= 1 MiB) ─► candidates: zstd ─┬─ plain zstd -19
                                              ├─ zstd -19 + viewer dictionary (if one)
                                              └─ emulator codec: offset -> byte (small blocks)
                            smallest wins ─► header | payload | crc32

    header: "SFB1" codec:u8 0:u8 raw_len:u32 raw_sha256[32] dict_id[8] payload_len:u32
            (dict_id: first 8 bytes of the dictionary's sha256, zeros for none)
    decode: magic, lengths, crc32 ─► decompress (bounded by raw_len) ─► sha256 == raw_sha256

Every block carries the sha256 of its raw bytes, so a range read checks exactly
the blocks it touches; a wrong byte anywhere is ``CorruptArtifact``, never
silently wrong output. A block that names a dictionary decodes only with that
exact dictionary (looked up by its id), so old blocks survive new dictionaries.
zstd frames carry no size, dictionary id or checksum of their own: the header
has all three, once.

The emulator codec is tried only on small blocks (<= 1 KiB) that zstd leaves
large (over a quarter of their size): compiling costs up to seconds, and text
that zstd handles well never turns out to be a cheaper function of its offset.
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import zstandard

from simulacra.errors import CodecError, CorruptArtifact, PayloadTooBig

__all__ = [
    "BlockCodec",
    "BLOCK_MAGIC",
    "MAX_BLOCK_BYTES",
    "HEADER",
    "EncodedBlock",
    "encode_block",
    "decode_block",
    "block_header",
    "DictionaryLookup",
    "DICT_ID_BYTES",
]

BLOCK_MAGIC = b"SFB1"
MAX_BLOCK_BYTES = 1 << 20
HEADER = struct.Struct(">4sBBI32s8sI")
_CRC = struct.Struct(">I")
_NO_DICT = bytes(8)
DICT_ID_BYTES = 8
ZSTD_LEVEL = 19
# The emulator codec compiles a table per block; only small blocks are worth the time.
EMULATOR_MAX_BYTES = 1024
EMULATOR_BUDGET_S = 2.0

# dict_id (8 bytes) -> the dictionary whose sha256 starts with it
DictionaryLookup = Callable[[bytes], zstandard.ZstdCompressionDict]


def _compressor(
    level: int, dictionary: zstandard.ZstdCompressionDict | None
) -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(
        level=level,
        dict_data=dictionary,
        write_content_size=False,
        write_dict_id=False,
        write_checksum=False,
    )


class BlockCodec(IntEnum):
    RAW = 0
    ZSTD = 1
    ZSTD_DICT = 2
    EMULATOR = 3


@dataclass(frozen=True, slots=True)
class EncodedBlock:
    """A block ready to store, and what it costs."""

    data: bytes
    codec: BlockCodec
    raw_len: int
    raw_sha256: bytes
    dict_sha256: bytes | None


@dataclass(frozen=True, slots=True)
class _Header:
    codec: BlockCodec
    raw_len: int
    raw_sha256: bytes
    dict_id: bytes | None
    payload_len: int


def _pack(
    codec: BlockCodec, raw: bytes, digest: bytes, dict_sha: bytes | None, payload: bytes
) -> bytes:
    dict_id = dict_sha[:DICT_ID_BYTES] if dict_sha else _NO_DICT
    head = HEADER.pack(BLOCK_MAGIC, int(codec), 0, len(raw), digest, dict_id, len(payload))
    body = head + payload
    return body + _CRC.pack(zlib.crc32(body))


def _emulator_payload(raw: bytes, deadline: float) -> bytes | None:
    """The block as an emulator ``offset -> byte``, or None when unavailable or too slow."""
    try:
        from simulacra.codecs.emulator import compile_table
    except ImportError:
        return None
    in_bits = max(1, math.ceil(math.log2(len(raw))))
    table = np.zeros(1 << in_bits, dtype=np.uint8)
    table[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    if time.perf_counter() > deadline:
        return None
    try:
        emu = compile_table(table, in_bits, 8)
    except (CodecError, MemoryError, ValueError):
        return None
    if time.perf_counter() > deadline:
        return None
    return emu.to_bytes()


def encode_block(
    raw: bytes,
    *,
    dictionary: zstandard.ZstdCompressionDict | None = None,
    dict_sha256: bytes | None = None,
    level: int = ZSTD_LEVEL,
    try_emulator: bool = True,
) -> EncodedBlock:
    """Encode ``raw`` with the smallest codec that round-trips exactly."""
    if len(raw) > MAX_BLOCK_BYTES:
        raise PayloadTooBig(f"block of {len(raw)} bytes is over {MAX_BLOCK_BYTES}")
    if (dictionary is None) != (dict_sha256 is None):
        raise CodecError("a dictionary needs its sha256, and a sha256 its dictionary")
    digest = hashlib.sha256(raw).digest()
    started = time.perf_counter()
    best: tuple[BlockCodec, bytes, bytes | None] = (BlockCodec.RAW, raw, None)
    plain = _compressor(level, None).compress(raw)
    if len(plain) < len(best[1]):
        best = (BlockCodec.ZSTD, plain, None)
    if dictionary is not None:
        with_dict = _compressor(level, dictionary).compress(raw)
        if len(with_dict) < len(best[1]):
            best = (BlockCodec.ZSTD_DICT, with_dict, dict_sha256)
    if try_emulator and 0 < len(raw) <= EMULATOR_MAX_BYTES and len(best[1]) * 4 > len(raw):
        payload = _emulator_payload(raw, started + EMULATOR_BUDGET_S)
        if payload is not None and len(payload) < len(best[1]):
            best = (BlockCodec.EMULATOR, payload, None)
    codec, payload, used_dict = best
    return EncodedBlock(
        _pack(codec, raw, digest, used_dict, payload), codec, len(raw), digest, used_dict
    )


def block_header(data: bytes | memoryview, *, max_raw: int = MAX_BLOCK_BYTES) -> _Header:
    """Parse and check a block's framing (magic, lengths, crc32); the payload is not decoded."""
    if len(data) < HEADER.size + _CRC.size:
        raise CorruptArtifact(f"block of {len(data)} bytes is shorter than its header")
    magic, codec, flags, raw_len, digest, dict_sha, payload_len = HEADER.unpack_from(data)
    if magic != BLOCK_MAGIC:
        raise CorruptArtifact("not a file block (bad magic)")
    if raw_len > max_raw:
        raise PayloadTooBig(f"block says {raw_len} raw bytes, limit is {max_raw}")
    if HEADER.size + payload_len + _CRC.size != len(data):
        raise CorruptArtifact("block length does not match its header")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(memoryview(data)[: len(data) - _CRC.size]) != crc:
        raise CorruptArtifact("block fails its crc32")
    try:
        kind = BlockCodec(codec)
    except ValueError:
        raise CorruptArtifact(f"unknown block codec {codec}") from None
    if flags != 0:
        raise CorruptArtifact(f"unknown block flags {flags}")
    return _Header(kind, raw_len, digest, None if dict_sha == _NO_DICT else dict_sha, payload_len)


def decode_block(
    data: bytes | memoryview,
    *,
    dictionaries: DictionaryLookup | None = None,
    max_raw: int = MAX_BLOCK_BYTES,
) -> bytes:
    """The exact raw bytes of a block, checked against the sha256 it carries."""
    head = block_header(data, max_raw=max_raw)
    payload = bytes(memoryview(data)[HEADER.size : HEADER.size + head.payload_len])
    try:
        if head.codec is BlockCodec.RAW:
            raw = payload
        elif head.codec is BlockCodec.ZSTD:
            raw = zstandard.ZstdDecompressor().decompress(payload, max_output_size=head.raw_len)
        elif head.codec is BlockCodec.ZSTD_DICT:
            if head.dict_id is None or dictionaries is None:
                raise CorruptArtifact("block needs a dictionary and none was given")
            zdict = dictionaries(head.dict_id)
            raw = zstandard.ZstdDecompressor(dict_data=zdict).decompress(
                payload, max_output_size=head.raw_len
            )
        else:
            from simulacra.codecs.emulator import Emulator

            emu = Emulator.from_bytes(payload)
            if emu.out_bits != 8 or (1 << emu.in_bits) < head.raw_len:
                raise CorruptArtifact("emulator block has the wrong shape")
            offsets = np.arange(head.raw_len, dtype=np.uint64)
            raw = emu.query(offsets).astype(np.uint8).tobytes()
    except zstandard.ZstdError as exc:
        raise CorruptArtifact(f"block does not decompress: {exc}") from exc
    except CorruptArtifact:
        raise
    except (CodecError, ValueError, KeyError, TypeError, IndexError) as exc:
        # An emulator payload that passed the crc but not its own parser: still corrupt.
        raise CorruptArtifact(f"block payload is malformed: {exc}") from exc
    if len(raw) != head.raw_len or hashlib.sha256(raw).digest() != head.raw_sha256:
        raise CorruptArtifact("block fails its sha256 check")
    return raw
