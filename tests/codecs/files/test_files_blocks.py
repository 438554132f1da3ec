import hashlib
import os
import struct
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from simulacra.codecs.files.blocks import (
    BLOCK_MAGIC,
    HEADER,
    MAX_BLOCK_BYTES,
    BlockCodec,
    block_header,
    decode_block,
    encode_block,
)
from simulacra.errors import CodecError, CorruptArtifact, PayloadTooBig


def _reframe(data: bytes) -> bytes:
    """Recompute the crc32 after a deliberate edit, so only the deeper checks can object."""
    body = data[:-4]
    return body + struct.pack(">I", zlib.crc32(body))


def test_raw_block_wire_bytes():
    raw = bytes([7, 200, 13])  # too short for zstd to win
    enc = encode_block(raw, try_emulator=False)
    digest = hashlib.sha256(raw).digest()
    body = (
        b"SFB1" + b"\x00\x00" + b"\x00\x00\x00\x03" + digest + bytes(8) + b"\x00\x00\x00\x03" + raw
    )
    assert enc.codec is BlockCodec.RAW
    assert enc.data == body + struct.pack(">I", zlib.crc32(body))
    assert HEADER.size == 54
    assert decode_block(enc.data) == raw


def test_empty_block_round_trips():
    enc = encode_block(b"", try_emulator=False)
    assert decode_block(enc.data) == b""


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000))
def test_round_trip_any_bytes(raw):
    enc = encode_block(raw, try_emulator=False)
    assert enc.raw_len == len(raw)
    assert enc.raw_sha256 == hashlib.sha256(raw).digest()
    assert decode_block(enc.data) == raw


def test_compressible_block_uses_zstd():
    raw = b"the quick brown fox " * 400
    enc = encode_block(raw, try_emulator=False)
    assert enc.codec is BlockCodec.ZSTD
    assert len(enc.data) < len(raw) // 10
    assert decode_block(enc.data) == raw


def test_dictionary_block_needs_exactly_its_dictionary():
    samples = [f"def f{i}(x):\n    return x * {i} + {i * i}\n".encode() * 20 for i in range(64)]
    zdict = zstandard.train_dictionary(4096, samples)
    sha = hashlib.sha256(zdict.as_bytes()).digest()
    raw = b"def g(x):\n    return x * 3 + 9\n"
    enc = encode_block(raw, dictionary=zdict, dict_sha256=sha, try_emulator=False)
    assert enc.codec is BlockCodec.ZSTD_DICT
    assert enc.dict_sha256 == sha
    assert decode_block(enc.data, dictionaries={sha[:8]: zdict}.__getitem__) == raw
    with pytest.raises(CorruptArtifact, match="needs a dictionary"):
        decode_block(enc.data)


def test_dictionary_without_its_sha_is_refused():
    zdict = zstandard.ZstdCompressionDict(b"x" * 64)
    with pytest.raises(CodecError):
        encode_block(b"abc", dictionary=zdict)


def test_emulator_codec_wins_on_a_function_like_block():
    raw = bytes(range(256)) * 4  # byte = offset mod 256: a tiny exact function
    enc = encode_block(raw)
    assert enc.codec is BlockCodec.EMULATOR
    assert len(enc.data) < len(encode_block(raw, try_emulator=False).data)
    assert decode_block(enc.data) == raw


def test_block_over_the_limit_is_refused():
    with pytest.raises(PayloadTooBig):
        encode_block(bytes(MAX_BLOCK_BYTES + 1), try_emulator=False)


def test_decoder_limit_applies_to_the_header():
    enc = encode_block(bytes(4096), try_emulator=False)
    with pytest.raises(PayloadTooBig):
        decode_block(enc.data, max_raw=1024)


@pytest.mark.parametrize("where", [0, 5, 40, 90, -1, -5])
def test_any_flipped_byte_is_caught(where):
    raw = os.urandom(64) + b"abc" * 300
    data = bytearray(encode_block(raw, try_emulator=False).data)
    data[where] ^= 0x40
    with pytest.raises((CorruptArtifact, PayloadTooBig)):
        decode_block(bytes(data))


def test_wrong_bytes_with_a_valid_crc_fail_the_sha256():
    raw = os.urandom(100)  # incompressible: stored RAW
    data = bytearray(encode_block(raw, try_emulator=False).data)
    assert data[4] == BlockCodec.RAW
    data[HEADER.size + 2] ^= 1
    with pytest.raises(CorruptArtifact, match="sha256"):
        decode_block(_reframe(bytes(data)))


def test_compressed_block_with_a_wrong_digest_fails_the_sha256():
    data = bytearray(encode_block(b"A" * 1000, try_emulator=False).data)
    assert data[4] == BlockCodec.ZSTD
    data[10] ^= 1  # first byte of the recorded sha256
    with pytest.raises(CorruptArtifact, match="sha256"):
        decode_block(_reframe(bytes(data)))


def test_truncated_and_foreign_data_are_refused():
    enc = encode_block(b"hello", try_emulator=False).data
    with pytest.raises(CorruptArtifact, match="shorter"):
        decode_block(enc[:20])
    with pytest.raises(CorruptArtifact, match="length"):
        decode_block(enc[:-1])
    with pytest.raises(CorruptArtifact, match="magic"):
        decode_block(b"NOPE" + enc[4:])
    assert BLOCK_MAGIC == b"SFB1"


def test_unknown_codec_is_corrupt():
    data = bytearray(encode_block(b"hello", try_emulator=False).data)
    data[4] = 9
    with pytest.raises(CorruptArtifact, match="codec"):
        decode_block(_reframe(bytes(data)))


def test_header_reports_codec_and_sizes():
    raw = b"xyz" * 1000
    enc = encode_block(raw, try_emulator=False)
    head = block_header(enc.data)
    assert head.codec is enc.codec
    assert head.raw_len == 3000
    assert head.payload_len == len(enc.data) - HEADER.size - 4


def test_emulator_is_not_tried_on_blocks_zstd_handles_well(monkeypatch):
    import simulacra.codecs.files.blocks as blocks

    def refuse(raw, deadline):
        raise AssertionError("emulator tried on text")

    monkeypatch.setattr(blocks, "_emulator_payload", refuse)
    text = b"def f(x):\n    return x + 1\n" * 30  # 840 bytes of text
    assert encode_block(text).codec is BlockCodec.ZSTD


@pytest.mark.parametrize("payload", [b"", b"\x00" * 40, b"SEMU" + bytes(60), os.urandom(200)])
def test_an_emulator_block_with_a_malformed_payload_is_corrupt(payload):
    head = HEADER.pack(BLOCK_MAGIC, BlockCodec.EMULATOR, 0, 3, bytes(32), bytes(8), len(payload))
    body = head + payload
    with pytest.raises(CorruptArtifact):
        decode_block(body + struct.pack(">I", zlib.crc32(body)))
