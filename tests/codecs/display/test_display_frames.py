import zlib

import numpy as np
import pytest
from display_testkit import pattern_tile
from hypothesis import given, settings
from hypothesis import strategies as st

from simulacra.codecs.display import (
    FrameDecoder,
    FrameEncoder,
    TileEncodeCache,
    TileEncoding,
    encode_tile,
    framebuffer_checksum,
    tile_hash,
    tile_table_checksum,
)
from simulacra.codecs.display.tiles import AUDIT_FRAMES
from simulacra.errors import CodecError, PayloadTooBig

SOLID, RAW, ZLIB, PALETTE_RLE, REF = 0, 1, 2, 3, 4


def _put(fb: np.ndarray, index: int, tile: np.ndarray) -> None:
    r, c = divmod(index, fb.shape[1] // 16)
    fb[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16] = tile


def _get(fb: np.ndarray, index: int) -> bytes:
    r, c = divmod(index, fb.shape[1] // 16)
    return fb[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16].tobytes()


def _solid(r: int, g: int, b: int) -> np.ndarray:
    return np.full((16, 16, 3), (r, g, b), np.uint8)


def test_exact_frames_with_refs_and_lru_eviction():
    a, b, c, d = _solid(1, 0, 0), _solid(2, 0, 0), _solid(3, 0, 0), _solid(4, 0, 0)
    enc = FrameEncoder(64, 16, dictionary_slots=2)
    dec = FrameDecoder(64, 16, dictionary_slots=2)
    fb = np.zeros((16, 64, 3), np.uint8)
    for index, tile in enumerate((a, b, c, a)):
        _put(fb, index, tile)
    # a->0, b->1, c evicts a (LRU) into 0, a evicts b into 1: no REF survives.
    tiles = enc.encode(fb, keyframe=True)
    assert tiles == [
        (0, SOLID, b"\1\0\0"),
        (1, SOLID, b"\2\0\0"),
        (2, SOLID, b"\3\0\0"),
        (3, SOLID, b"\1\0\0"),
    ]
    dec.apply(tiles, keyframe=True)
    _put(fb, 0, a)  # unchanged: not sent
    _put(fb, 1, a)  # a sits in slot 1
    _put(fb, 2, d)  # d evicts c (slot 0, now least recent)
    tiles = enc.encode(fb)
    assert tiles == [(1, REF, b"\x00\x01"), (2, SOLID, b"\4\0\0")]
    assert [enc.dictionary.slot_hash(s) for s in (0, 1)] == [
        tile_hash(d.tobytes()),
        tile_hash(a.tobytes()),
    ]
    dec.apply(tiles, keyframe=False)
    assert (dec.framebuffer == fb).all()
    assert dec.checksum() == enc.checksum() == zlib.crc32(fb.tobytes())
    # A keyframe resets the dictionary: slot numbering starts again at 0.
    tiles = enc.encode(fb, keyframe=True)
    assert tiles == [
        (0, SOLID, b"\1\0\0"),
        (1, REF, b"\x00\x00"),
        (2, SOLID, b"\4\0\0"),
        (3, REF, b"\x00\x00"),
    ]
    dec.apply(tiles, keyframe=True)
    assert (dec.framebuffer == fb).all()


def test_repeated_content_within_a_keyframe_is_a_ref():
    fb = np.zeros((16, 48, 3), np.uint8)
    pattern = pattern_tile(1)
    for index in range(3):
        _put(fb, index, pattern)
    tiles = FrameEncoder(48, 16).encode(fb, keyframe=True)
    assert tiles == [(0, *encode_tile(pattern.tobytes())), (1, REF, b"\0\0"), (2, REF, b"\0\0")]


def test_unchanged_frame_sends_nothing_and_no_dictionary_means_no_refs():
    fb = np.zeros((32, 32, 3), np.uint8)
    enc = FrameEncoder(32, 32, dictionary_slots=0)
    tiles = enc.encode(fb, keyframe=True)
    assert tiles == [(i, SOLID, b"\0\0\0") for i in range(4)]
    assert enc.encode(fb) == []
    assert enc.tiles_sent == 4 and enc.refs_sent == 0


def test_encoder_input_checks():
    enc = FrameEncoder(32, 16)
    with pytest.raises(CodecError):
        enc.encode(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(CodecError):
        enc.encode(np.zeros((16, 32, 3), np.float32))
    with pytest.raises(CodecError):
        FrameEncoder(30, 16)
    with pytest.raises(CodecError):
        FrameEncoder(32, 16, dictionary_slots=65537)
    with pytest.raises(CodecError):
        FrameDecoder(32, 17)


def test_encoder_framebuffer_view_is_read_only():
    enc = FrameEncoder(16, 16)
    with pytest.raises(ValueError):
        enc.framebuffer[0, 0, 0] = 1


class _ModelDictionary:
    """The protocol text, written as plainly as possible: a list of slots and a use order."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.content: list[bytes] = []
        self.use: list[int] = []

    def reset(self) -> None:
        self.content, self.use = [], []

    def find(self, tile: bytes) -> int | None:
        return self.content.index(tile) if tile in self.content else None

    def mark(self, slot: int) -> None:
        if slot in self.use:
            self.use.remove(slot)
        self.use.append(slot)

    def insert(self, tile: bytes) -> int:
        if len(self.content) < self.slots:
            self.content.append(tile)
            slot = len(self.content) - 1
        else:
            slot = self.use[0]
            self.content[slot] = tile
        self.mark(slot)
        return slot


frame_steps = st.lists(
    st.tuples(
        st.booleans(),  # keyframe
        st.lists(st.tuples(st.integers(0, 5), st.integers(0, 11)), max_size=8),
    ),
    min_size=1,
    max_size=12,
)


def _run_stream(slots: int, steps: list, shared: bool) -> tuple[FrameEncoder, _ModelDictionary]:
    """Encode, check against the model, decode; every frame must match bit for bit."""
    width, height = 48, 32  # 3 x 2 tiles
    cache = TileEncodeCache(16) if shared else None
    enc = FrameEncoder(width, height, dictionary_slots=slots, cache=cache)
    dec = FrameDecoder(width, height, dictionary_slots=slots)
    model = _ModelDictionary(slots)
    fb = np.zeros((height, width, 3), np.uint8)
    client = fb.copy()
    for n, (keyframe, changes) in enumerate(steps):
        keyframe = keyframe or n == 0
        for index, pattern in changes:
            _put(fb, index, pattern_tile(pattern))
        tiles = enc.encode(fb, keyframe=keyframe)
        # Exactly the tiles that differ, ascending; all of them on a keyframe.
        expected = range(6) if keyframe else [i for i in range(6) if _get(fb, i) != _get(client, i)]
        assert [t[0] for t in tiles] == list(expected)
        if keyframe:
            model.reset()
        for index, encoding, data in tiles:
            content = _get(fb, index)
            slot = model.find(content) if slots else None
            if slot is not None:
                assert (encoding, data) == (REF, slot.to_bytes(2, "big"))
                model.mark(slot)
            else:
                assert (encoding, data) == encode_tile(content)
                if slots:
                    model.insert(content)
        dec.apply(tiles, keyframe=keyframe)
        client = fb.copy()
        assert (dec.framebuffer == fb).all()
        assert dec.checksum() == framebuffer_checksum(fb) == enc.checksum()
        assert dec.table_checksum() == tile_table_checksum(fb)
        assert enc.dictionary.lru.order() == dec.dictionary.lru.order() == model.use
        for slot in range(slots):
            held = dec.dictionary.slot_tile(slot)
            assert enc.dictionary.slot_hash(slot) == (tile_hash(held) if held is not None else None)
            assert held == (model.content[slot] if slot < len(model.content) else None)
    return enc, model


@settings(max_examples=150, deadline=None)
@given(slots=st.sampled_from([0, 1, 2, 3, 8]), steps=frame_steps, shared=st.booleans())
def test_random_streams_stay_in_lockstep(slots, steps, shared):
    _run_stream(slots, steps, shared)


def test_a_long_stream_reuses_and_evicts_slots():
    rng = np.random.default_rng(5)
    steps = [
        (n % 50 == 0, [(int(rng.integers(6)), int(rng.integers(12))) for _ in range(3)])
        for n in range(300)
    ]
    enc, model = _run_stream(8, steps, shared=True)
    assert enc.refs_sent > 50
    assert enc.cache is not None and enc.cache.hits > 0
    assert len(model.content) == 8


def test_full_size_frames_round_trip():
    width, height = 512, 576
    rng = np.random.default_rng(1)
    enc = FrameEncoder(width, height, cache=TileEncodeCache())
    dec = FrameDecoder(width, height)
    fb = np.zeros((height, width, 3), np.uint8)
    fb[100:400, 50:450] = (187, 173, 160)
    for n in range(6):
        y, x = rng.integers(0, height - 40), rng.integers(0, width - 40)
        fb[y : y + 37, x : x + 29] = rng.integers(0, 256, 3)
        fb[y + 3 : y + 9, x + 1 : x + 20] = rng.integers(0, 256, (6, 19, 3))
        tiles = enc.encode(fb, keyframe=n == 0)
        assert len(tiles) == (width // 16) * (height // 16) if n == 0 else len(tiles) <= 12
        dec.apply(tiles, keyframe=n == 0)
        assert (dec.framebuffer == fb).all()
        assert dec.checksum() == framebuffer_checksum(fb)
        assert dec.table_checksum() == tile_table_checksum(fb)
    assert enc.refs_sent > 1000  # the blank and boxed areas repeat one tile each


def test_nbytes_is_bounded_independent_of_stream_length():
    width, height, slots = 64, 64, 8
    enc = FrameEncoder(width, height, dictionary_slots=slots, cache=TileEncodeCache(32))
    rng = np.random.default_rng(11)
    fb = np.zeros((height, width, 3), np.uint8)
    sizes = []
    for n in range(400):
        fb[rng.integers(0, height), rng.integers(0, width)] = rng.integers(0, 256, 3)
        enc.encode(fb, keyframe=n % 97 == 0)
        sizes.append(enc.nbytes)
    assert max(sizes) <= fb.nbytes + 4096 + slots * 512
    assert max(sizes[300:]) <= max(sizes[:100])
    assert len(enc.cache) == 32


def _keyframe(width: int = 32, height: int = 16) -> list[tuple[int, int, bytes]]:
    return [(i, SOLID, b"\x09\x09\x09") for i in range((width // 16) * (height // 16))]


@pytest.mark.parametrize(
    "tiles",
    [
        [(2, SOLID, b"\0\0\0")],  # index past the last tile
        [(-1, SOLID, b"\0\0\0")],
        [(True, SOLID, b"\0\0\0")],
        [("0", SOLID, b"\0\0\0")],
        [(0, SOLID)],  # not a triple
        [None],
        [(0, 9, b"\0\0\0")],  # unknown encoding
        [(0, RAW, bytes(700))],
        [(0, REF, b"\x00\x05")],  # slot 5 never filled
        [(0, REF, b"\x00\x00")],  # slot 0 empty before this frame
        [(0, REF, b"\x00")],
        [(0, REF, "ab")],
        [(0, SOLID, b"\1\1\1"), (1, REF, b"\x00\x01")],  # slot 1 still empty
    ],
)
def test_decoder_rejects_malformed_frames(tiles):
    dec = FrameDecoder(32, 16, dictionary_slots=4)
    with pytest.raises(CodecError):
        dec.apply(tiles, keyframe=False)


def test_ref_to_a_slot_filled_earlier_in_the_same_frame():
    dec = FrameDecoder(32, 16, dictionary_slots=4)
    dec.apply([(0, SOLID, b"\1\2\3"), (1, REF, b"\x00\x00")], keyframe=True)
    assert dec.framebuffer.tobytes() == b"\1\2\3" * 512


def test_ref_without_a_dictionary_is_rejected():
    dec = FrameDecoder(32, 16, dictionary_slots=0)
    dec.apply(_keyframe(), keyframe=True)
    with pytest.raises(CodecError):
        dec.apply([(0, REF, b"\x00\x00")], keyframe=False)


def test_keyframe_must_list_every_tile_once():
    dec = FrameDecoder(32, 16)
    with pytest.raises(CodecError):
        dec.apply(_keyframe()[:1], keyframe=True)
    with pytest.raises(CodecError):
        dec.apply([(0, SOLID, b"\0\0\0"), (0, SOLID, b"\0\0\0")], keyframe=True)


def test_too_many_tiles_is_payload_too_big():
    dec = FrameDecoder(32, 16)
    with pytest.raises(PayloadTooBig):
        dec.apply(_keyframe() + [(0, SOLID, b"\0\0\0")], keyframe=False)
    with pytest.raises(PayloadTooBig):
        dec.apply([(0, ZLIB, zlib.compress(bytes(1_000_000), 9))], keyframe=False)


def test_a_bad_frame_changes_nothing():
    dec = FrameDecoder(64, 16, dictionary_slots=2)
    dec.apply([(i, SOLID, bytes([i + 1] * 3)) for i in range(4)], keyframe=True)
    before = dec.framebuffer.copy()
    order = dec.dictionary.lru.order()
    slots = [dec.dictionary.slot_tile(s) for s in range(2)]
    bad = [(0, SOLID, b"\3\3\3"), (1, REF, b"\x00\x00"), (1, PALETTE_RLE, b"\x01\0\0\0\xff\x01")]
    with pytest.raises(CodecError):
        dec.apply(bad, keyframe=False)
    with pytest.raises(CodecError):
        dec.apply(bad[:2] + [(0, SOLID, b"")], keyframe=True)
    assert (dec.framebuffer == before).all()
    assert dec.dictionary.lru.order() == order
    assert [dec.dictionary.slot_tile(s) for s in range(2)] == slots


def test_decoder_accepts_tuples_and_bytearrays_as_the_protocol_gives_them():
    dec = FrameDecoder(16, 16)
    fb = dec.apply(((0, int(TileEncoding.RAW), bytearray(range(256)) * 3),), keyframe=True)
    assert fb is dec.framebuffer
    assert fb.tobytes() == bytes(range(256)) * 3


garbage_tiles = st.lists(
    st.tuples(
        st.integers(-1, 4),
        st.integers(-1, 6),
        st.one_of(
            st.binary(max_size=12),
            st.binary(min_size=760, max_size=780),
            st.sampled_from([b"\x00\x00", b"\x00\x01", b"\x01\x00" + bytes(255) * 3 + b"\xff\x00"]),
            st.builds(lambda n: zlib.compress(bytes(n)), st.integers(760, 780)),
        ),
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(garbage_tiles, st.booleans())
def test_garbage_either_applies_or_raises_and_changes_nothing(tiles, keyframe):
    dec = FrameDecoder(32, 32, dictionary_slots=2)
    dec.apply([(i, SOLID, bytes([i] * 3)) for i in range(4)], keyframe=True)
    before = dec.framebuffer.copy()
    order = dec.dictionary.lru.order()
    try:
        dec.apply(tiles, keyframe=keyframe)
    except (CodecError, PayloadTooBig):
        assert (dec.framebuffer == before).all()
        assert dec.dictionary.lru.order() == order


@settings(max_examples=25, deadline=None)
@given(
    before=st.lists(st.lists(st.integers(0, 11), min_size=8, max_size=8), max_size=4),
    after=st.lists(st.lists(st.integers(0, 11), min_size=8, max_size=8), min_size=1, max_size=4),
    slots=st.integers(0, 6),
)
def test_copy_encodes_like_the_original_and_stays_independent(before, after, slots):
    def picture(patterns: list[int]) -> np.ndarray:
        fb = np.zeros((32, 64, 3), np.uint8)
        for index, pattern in enumerate(patterns):
            _put(fb, index, pattern_tile(pattern))
        return fb

    cache = TileEncodeCache(64)
    enc = FrameEncoder(64, 32, dictionary_slots=slots, cache=cache)
    for patterns in before:
        enc.encode(picture(patterns))
    twin = enc.copy()
    assert twin.cache is cache and (twin.framebuffer == enc.framebuffer).all()
    decoder = FrameDecoder(64, 32, dictionary_slots=slots)
    decoder.apply(twin.encode(twin.framebuffer.copy(), keyframe=True), keyframe=True)
    # The copy went its own way (a keyframe reset its dictionary); the original did not
    # notice, and a copy taken before that still produces the original's exact tiles.
    enc_again = FrameEncoder(64, 32, dictionary_slots=slots, cache=cache)
    for patterns in before:
        enc_again.encode(picture(patterns))
    for patterns in after:
        fb = picture(patterns)
        assert enc.encode(fb) == enc_again.encode(fb)
        decoder.apply(twin.encode(fb), keyframe=False)
        assert decoder.checksum() == framebuffer_checksum(fb)


def test_table_checksum_finds_pixels_changed_behind_the_decoder():
    enc, dec = FrameEncoder(512, 400), FrameDecoder(512, 400)
    fb = np.random.default_rng(8).integers(0, 256, (400, 512, 3), dtype=np.uint8)
    dec.apply(enc.encode(fb, keyframe=True), keyframe=True)
    assert dec.table_checksum() == tile_table_checksum(fb)
    dec.framebuffer[399, 0] ^= 0x80  # no frame wrote this: memory went bad
    seen = []
    for _ in range(AUDIT_FRAMES):
        dec.apply(enc.encode(fb, keyframe=False), keyframe=False)  # nothing changed
        seen.append(dec.table_checksum() == tile_table_checksum(fb))
    assert seen[0] and not seen[-1]  # vouched for at first, caught within one rotation
