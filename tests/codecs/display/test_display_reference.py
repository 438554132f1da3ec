"""The fast decode paths against the per-tile reference: same tiles, pictures, slots, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulacra.codecs.display import FrameDecoder, encode_tile, pack_tiles, unpack_tiles
from simulacra.codecs.display.reference import ReferenceFrameDecoder, unpack_tiles_reference
from simulacra.errors import CodecError, PayloadTooBig

SOLID, RAW, ZLIB, PALETTE_RLE, REF = 0, 1, 2, 3, 4
W, H = 64, 48  # 12 tiles


def _pattern(n: int) -> tuple[int, bytes]:
    rng = np.random.default_rng(n)
    kind = n % 3
    if kind == 0:
        tile = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (256, 3))
    elif kind == 1:
        tile = rng.integers(0, 3, (256, 3), dtype=np.uint8) * 90
    else:
        tile = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    return encode_tile(np.ascontiguousarray(tile).tobytes())


PATTERNS = [_pattern(n) for n in range(9)]

# A tile: ("ref", slot) or ("new", pattern); slots past the filled ones test the errors.
tile_spec = st.one_of(
    st.tuples(st.just("ref"), st.integers(0, 6)),
    st.tuples(st.just("new"), st.integers(0, len(PATTERNS) - 1)),
)
frame_spec = st.tuples(
    st.booleans(),  # keyframe
    st.lists(st.tuples(st.integers(0, 11), tile_spec), max_size=14),
)


def _tiles(keyframe: bool, listed: list, ascending: bool) -> list[tuple[int, int, bytes]]:
    if keyframe:
        specs = [spec for _, spec in listed] + [("new", 0)] * 12
        listed = list(enumerate(specs[:12]))
    elif ascending:
        listed = sorted(dict(listed).items())
    out = []
    for index, (kind, value) in listed:
        if kind == "ref":
            out.append((index, REF, value.to_bytes(2, "big")))
        else:
            out.append((index, *PATTERNS[value]))
    return out


def _outcome(fn, *args, **kwargs) -> tuple:  # type: ignore[no-untyped-def]
    try:
        result = fn(*args, **kwargs)
    except (CodecError, PayloadTooBig) as exc:
        return (type(exc).__name__, str(exc))
    return ("ok", result.tobytes() if isinstance(result, np.ndarray) else result)


def _state(dec: FrameDecoder | ReferenceFrameDecoder) -> tuple:
    d = dec.dictionary
    return (
        dec.framebuffer.tobytes(),
        d.lru.filled,
        d.lru.order(),
        d.pixels[: d.lru.filled].tobytes(),
    )


@settings(max_examples=300, deadline=None)
@given(
    slots=st.sampled_from([0, 1, 2, 3, 5]),
    frames=st.lists(frame_spec, min_size=1, max_size=12),
    packed=st.booleans(),
)
def test_fast_decoder_matches_the_reference(slots: int, frames: list, packed: bool) -> None:
    """Interleaved inserts, evictions and REFs (also to slots written in the same frame)."""
    fast = FrameDecoder(W, H, dictionary_slots=slots)
    ref = ReferenceFrameDecoder(W, H, dictionary_slots=slots)
    for keyframe, listed in frames:
        tiles = _tiles(keyframe, listed, ascending=packed)
        if packed:
            raw = pack_tiles(tiles)
            fast_tiles = unpack_tiles(raw, len(tiles), 12)
            tiles = unpack_tiles_reference(raw, len(tiles), 12)  # ZLIB travels as PALETTE_RLE
            assert fast_tiles == tiles
        else:
            fast_tiles = tiles  # may repeat an index: the last tile there wins
        got = _outcome(fast.apply, fast_tiles, keyframe=keyframe)
        want = _outcome(ref.apply, tiles, keyframe=keyframe)
        assert got == want
        assert _state(fast) == _state(ref)


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=40), count=st.integers(0, 14))
def test_unpack_matches_the_reference_on_any_bytes(raw: bytes, count: int) -> None:
    got = _outcome(unpack_tiles, raw, count, 12)
    assert got == _outcome(unpack_tiles_reference, raw, count, 12)


@settings(max_examples=200, deadline=None)
@given(
    runs=st.lists(st.tuples(st.integers(0, 3), st.integers(-3, 3), st.integers(1, 8)), max_size=12)
)
def test_unpack_of_ref_runs_matches_the_reference(runs: list) -> None:
    """Runs of 3-byte REF records (the fast path) mixed with longer ones."""
    tiles, index, slot = [], -1, 0
    for gap, step, length in runs:
        for _ in range(length):
            index += 1 + gap
            slot = (slot + step) % 300
            tiles.append((index, REF, slot.to_bytes(2, "big")))
    raw = pack_tiles(tiles)
    assert unpack_tiles(raw, len(tiles), 1 << 16) == unpack_tiles_reference(
        raw, len(tiles), 1 << 16
    )


def test_packed_tiles_are_read_only() -> None:
    tiles = unpack_tiles(pack_tiles([(0, SOLID, b"\1\2\3")]), 1, 12)
    with pytest.raises(TypeError):
        tiles.append((1, SOLID, b"\1\2\3"))
    with pytest.raises(TypeError):
        tiles[0] = (1, SOLID, b"\1\2\3")
    assert tiles == [(0, SOLID, b"\1\2\3")]
