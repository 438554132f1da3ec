"""Packed tile lists and the per-connection deflate stream (PackedFrame payloads)."""

import zlib

import numpy as np
import pytest
from display_testkit import pattern_tile
from hypothesis import given, settings
from hypothesis import strategies as st

from simulacra.codecs.display import (
    MAX_PACKED_BYTES,
    DeflateStream,
    FrameDecoder,
    FrameEncoder,
    InflateStream,
    TileEncodeCache,
    decode_tile,
    pack_tiles,
    unpack_tiles,
)
from simulacra.errors import CodecError, PayloadTooBig

SOLID, RAW, ZLIB, PALETTE_RLE, REF = 0, 1, 2, 3, 4
W, H = 64, 48  # 12 tiles


def test_exact_bytes_of_a_small_list() -> None:
    palette = bytes([1, 9, 9, 9, 255, 0])  # one colour, one run of 256
    tiles = [
        (0, SOLID, b"\x01\x02\x03"),
        (1, REF, b"\x00\x05"),
        (2, REF, b"\x00\x06"),
        (5, PALETTE_RLE, palette),
        (6, REF, b"\x00\x02"),
        (300, REF, b"\x01\x00"),
    ]
    assert pack_tiles(tiles) == bytes.fromhex(
        "00 00 010203"  # index 0 (gap 0), SOLID, r g b
        " 00 04 0a"  # index 1, REF slot 5: delta 5 - 0 = 5, zigzag 10
        " 00 04 00"  # index 2, REF slot 6: delta 0 (the slot after the previous REF)
        " 02 03 06 01090909ff00"  # index 5 (gap 2), PALETTE_RLE, length 6, data
        " 00 04 09"  # index 6, REF slot 2: delta 2 - 7 = -5, zigzag 9
        " a502 04 fa03"  # index 300 (gap 293), REF slot 256: delta 253, zigzag 506
    )
    assert unpack_tiles(pack_tiles(tiles), len(tiles), 400) == tiles


def test_zlib_tiles_travel_as_palette_or_raw() -> None:
    few = (np.arange(768, dtype=np.uint8) // 100 * 40).tobytes()  # 8 colours
    noise = np.random.default_rng(1).integers(0, 256, 768, dtype=np.uint8).tobytes()
    tiles = [(0, ZLIB, zlib.compress(few)), (1, ZLIB, zlib.compress(noise))]
    back = unpack_tiles(pack_tiles(tiles), 2, 12)
    assert [(i, e) for i, e, _ in back] == [(0, PALETTE_RLE), (1, RAW)]
    assert decode_tile(*back[0][1:]).tobytes() == few
    assert back[1][2] == noise


def test_stream_chunks_reset_at_keyframes_and_skip_empty_frames() -> None:
    server, client = DeflateStream(), InflateStream()
    raws = [b"a" * 40, b"a" * 40, b"", b"b" * 9]
    chunks = [server.compress(raws[0], keyframe=True)]
    chunks += [server.compress(r, keyframe=False) for r in raws[1:]]
    assert chunks[0][:2] == b"\x78\xda"  # a zlib header (level 9): the browser's 'deflate'
    assert chunks[2] == b""  # a frame without tiles leaves the stream alone
    assert all(c.endswith(b"\x00\x00\xff\xff") for c in chunks if c)  # sync flushes
    assert len(chunks[1]) < len(chunks[0])  # the history already holds it
    got = [client.inflate(chunks[0], 40, keyframe=True)]
    got += [
        client.inflate(c, len(r), keyframe=False) for c, r in zip(chunks[1:], raws[1:], strict=True)
    ]
    assert got == raws
    again = server.compress(raws[0], keyframe=True)
    assert again == chunks[0]  # a keyframe starts a new stream: same bytes as the first
    assert client.inflate(again, 40, keyframe=True) == raws[0]


@pytest.mark.parametrize(
    ("raw", "count", "error", "message"),
    [
        (b"\x00", 1, CodecError, "end inside a tile"),
        (b"\x00\x00\x01\x02", 1, CodecError, "end inside a tile"),
        (b"\x00\x00\x01\x02\x03\x00", 1, CodecError, "1 bytes after the last"),
        (b"\x00\x07\x00", 1, CodecError, "unknown tile encoding 7"),
        (b"\x0c\x00\x01\x02\x03", 1, CodecError, "tile index 12 outside"),
        (b"\xff\xff\xff\xff\x0f", 1, CodecError, "packed number past 12"),
        (b"\x80", 1, CodecError, "end inside a number"),
        (b"\x00\x04\x01", 1, CodecError, "REF slot -1 outside"),
        (b"\x00\x04\x80\x80\x08", 1, CodecError, "REF slot 65536 outside"),
        (b"\x00\x04\x80\x80\x10", 1, CodecError, "packed number past 131072"),
        (b"\x00\x03\x81\x10", 1, CodecError, "packed number past 2048"),
        (b"", 13, PayloadTooBig, "frame lists 13 tiles"),
    ],
)
def test_unpack_rejects(raw: bytes, count: int, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        unpack_tiles(raw, count, 12)


def test_pack_rejects_what_it_cannot_say() -> None:
    with pytest.raises(CodecError, match="ascending"):
        pack_tiles([(3, SOLID, b"abc"), (3, SOLID, b"abc")])
    with pytest.raises(CodecError, match="REF: 2 bytes"):
        pack_tiles([(0, REF, b"\x00")])
    with pytest.raises(CodecError, match="3 bytes expected"):
        pack_tiles([(0, SOLID, b"ab")])
    with pytest.raises(CodecError, match="unknown tile encoding 9"):
        pack_tiles([(0, 9, b"")])
    with pytest.raises(PayloadTooBig):
        DeflateStream().compress(bytes(MAX_PACKED_BYTES + 1), keyframe=True)


def test_inflate_checks_sizes_and_state() -> None:
    chunk = DeflateStream().compress(b"x" * 100, keyframe=True)
    with pytest.raises(CodecError, match="before the first keyframe"):
        InflateStream().inflate(chunk, 100, keyframe=False)
    with pytest.raises(PayloadTooBig, match="past its declared 99"):
        InflateStream().inflate(chunk, 99, keyframe=True)
    with pytest.raises(CodecError, match="inflates to 100 bytes, declared 101"):
        InflateStream().inflate(chunk, 101, keyframe=True)
    with pytest.raises(PayloadTooBig, match="limit"):
        InflateStream().inflate(chunk, MAX_PACKED_BYTES + 1, keyframe=True)
    with pytest.raises(CodecError, match="carries no stream data"):
        InflateStream().inflate(chunk, 0, keyframe=True)
    with pytest.raises(CodecError, match="packed stream"):
        InflateStream().inflate(b"\x78\xda\xff\xff\xff", 5, keyframe=True)
    ended = zlib.compress(b"x" * 100, 9)  # a whole stream, ended: not ours
    with pytest.raises(CodecError, match="ended"):
        InflateStream().inflate(ended, 100, keyframe=True)
    broken = InflateStream()
    with pytest.raises(CodecError):
        broken.inflate(chunk[:-6] + b"\xff" * 6, 100, keyframe=True)
    with pytest.raises(CodecError, match="before the first keyframe"):
        broken.inflate(chunk, 100, keyframe=False)  # lost until the next keyframe
    assert broken.inflate(chunk, 100, keyframe=True) == b"x" * 100


class _Viewer:
    """A client: inflater, unpacker, frame decoder."""

    def __init__(self) -> None:
        self.inflater = InflateStream()
        self.decoder = FrameDecoder(W, H, dictionary_slots=6)

    def take(self, data: bytes, size: int, count: int, keyframe: bool) -> None:
        raw = self.inflater.inflate(data, size, keyframe=keyframe)
        self.decoder.apply(unpack_tiles(raw, count, 12), keyframe=keyframe)


class _Group:
    """A server group: encoder and stream; ``fork`` copies both, as sessions.py does."""

    def __init__(self, encoder: FrameEncoder, stream: DeflateStream) -> None:
        self.encoder, self.stream = encoder, stream

    def fork(self) -> "_Group":
        return _Group(self.encoder.copy(), self.stream.copy())

    def send(self, fb: np.ndarray, keyframe: bool, viewers: list[_Viewer]) -> None:
        tiles = self.encoder.encode(fb, keyframe=keyframe)
        raw = pack_tiles(tiles)
        data = self.stream.compress(raw, keyframe=keyframe)
        for v in viewers:
            v.take(data, len(raw), len(tiles), keyframe)
            assert v.decoder.checksum() == self.encoder.checksum()
            assert np.array_equal(v.decoder.framebuffer, fb)


frame_steps = st.lists(
    st.tuples(
        st.sampled_from(["draw", "draw", "draw", "key", "fork"]),
        st.lists(st.tuples(st.integers(0, 11), st.integers(0, 9)), max_size=12),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(steps=frame_steps)
def test_round_trip_with_keyframes_and_forks(
    steps: list[tuple[str, list[tuple[int, int]]]],
) -> None:
    """Random pictures through encode, pack, stream: every viewer holds the server's picture.

    A fork splits the viewers: each half continues from a copy of the encoder
    and the stream, drawing its own pictures from then on.
    """
    cache = TileEncodeCache(64)
    start = _Group(FrameEncoder(W, H, dictionary_slots=6, cache=cache), DeflateStream())
    viewers = [_Viewer(), _Viewer()]
    groups: list[tuple[_Group, list[_Viewer], np.ndarray]] = []
    fb = np.zeros((H, W, 3), dtype=np.uint8)
    start.send(fb, True, viewers)
    groups.append((start, viewers, fb))
    for n, (kind, changes) in enumerate(steps):
        g = n % len(groups)
        group, members, picture = groups[g]
        if kind == "fork" and len(members) > 1:
            groups.append((group.fork(), members[1:], picture.copy()))
            groups[g] = (group, members[:1], picture)
            continue
        for index, pattern in changes:
            r, c = divmod(index, W // 16)
            picture[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16] = pattern_tile(pattern)
        group.send(picture, kind == "key", members)
