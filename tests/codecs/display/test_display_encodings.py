import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulacra.codecs.display import MAX_TILE_DATA, TileEncoding, decode_tile, encode_tile
from simulacra.codecs.display.encodings import decode_tiles
from simulacra.errors import CodecError, PayloadTooBig

RED, BLUE, GREEN, BLACK = b"\xff\x00\x00", b"\x00\x00\xff", b"\x00\xff\x00", b"\x00\x00\x00"


def test_encoding_ids_match_the_protocol():
    assert [(e.name, int(e)) for e in TileEncoding] == [
        ("SOLID", 0),
        ("RAW", 1),
        ("ZLIB", 2),
        ("PALETTE_RLE", 3),
        ("REF", 4),
    ]


def test_solid():
    assert encode_tile(b"\x01\x02\x03" * 256) == (0, b"\x01\x02\x03")
    assert decode_tile(0, b"\x01\x02\x03").tobytes() == b"\x01\x02\x03" * 256


def test_palette_rle_two_halves():
    tile = RED * 128 + BLUE * 128
    expected = b"\x02" + RED + BLUE + bytes([127, 0, 127, 1])
    assert encode_tile(tile) == (3, expected)
    assert decode_tile(3, expected).tobytes() == tile


def test_palette_rle_orders_colours_by_first_appearance():
    tile = GREEN + BLACK * 254 + GREEN
    expected = b"\x02" + GREEN + BLACK + bytes([0, 0, 253, 1, 0, 0])
    assert encode_tile(tile) == (3, expected)
    assert decode_tile(3, expected).tobytes() == tile


def test_palette_rle_alternating_colours_uses_one_run_per_pixel():
    tile = (RED + BLUE) * 128
    enc, data = encode_tile(tile)
    # 1 + 6 + 512 = 519 < 768, but zlib shrinks the repetition far more.
    assert enc == TileEncoding.ZLIB
    assert data == zlib.compress(tile, 6)


def test_zlib_when_too_many_colours_for_a_palette():
    tile = b"".join(bytes((i, 0, 0)) for i in range(256))
    assert encode_tile(tile) == (2, zlib.compress(tile, 6))
    assert decode_tile(2, zlib.compress(tile, 6)).tobytes() == tile


def test_raw_when_nothing_compresses():
    tile = np.random.default_rng(7).integers(0, 256, 768, dtype=np.uint8).tobytes()
    assert encode_tile(tile) == (1, tile)
    assert decode_tile(1, tile).tobytes() == tile


def test_palette_with_255_colours_and_a_full_run_decode():
    palette = bytes(range(255)) * 3
    runs = bytes([0, 0]) * 254 + bytes([1, 254])
    tile = decode_tile(3, b"\xff" + palette + runs).reshape(256, 3)
    pal = np.frombuffer(palette, np.uint8).reshape(255, 3)
    assert (tile[:254] == pal[0]).all() and (tile[254:] == pal[254]).all()
    assert decode_tile(3, b"\x01" + RED + b"\xff\x00").tobytes() == RED * 256


def test_encode_rejects_wrong_length():
    with pytest.raises(CodecError):
        encode_tile(bytes(767))


def _few_colour_tiles():
    colour = st.binary(min_size=3, max_size=3)
    run = st.tuples(st.integers(0, 7), st.integers(1, 64))

    @st.composite
    def build(draw):
        palette = draw(st.lists(colour, min_size=1, max_size=8))
        pixels = []
        for index, length in draw(st.lists(run, min_size=1, max_size=40)):
            pixels.extend([palette[index % len(palette)]] * length)
        pixels = (pixels * 256)[:256]
        return b"".join(pixels)

    return build()


@given(st.one_of(st.binary(min_size=768, max_size=768), _few_colour_tiles()))
def test_round_trip_and_smallest(tile):
    enc, data = encode_tile(tile)
    assert decode_tile(enc, data).tobytes() == tile
    assert len(data) <= len(zlib.compress(tile, 6)) and len(data) <= 768
    uniform = tile == tile[:3] * 256
    assert (enc == TileEncoding.SOLID) == uniform


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        (0, b"\x01\x02"),
        (0, b"\x01\x02\x03\x04"),
        (1, bytes(767)),
        (1, bytes(769)),
        (2, b"not zlib at all"),
        (2, zlib.compress(bytes(767))),  # one byte short
        (2, zlib.compress(bytes(768))[:-3]),  # truncated stream
        (2, zlib.compress(bytes(768)) + b"x"),  # trailing bytes
        (3, b""),
        (3, b"\x00"),  # palette size 0
        (3, b"\x02" + RED),  # palette cut short
        (3, b"\x01" + RED),  # no runs
        (3, b"\x01" + RED + b"\xff"),  # half a run
        (3, b"\x01" + RED + b"\xfe\x00"),  # runs cover 255 pixels
        (3, b"\x01" + RED + b"\xff\x00\x00\x00"),  # runs cover 257 pixels
        (3, b"\x01" + RED + b"\xff\x01"),  # index 1 >= palette size 1
        (4, b"\x00\x00"),  # REF is resolved by the frame decoder, not here
        (5, bytes(3)),
        (-1, bytes(3)),
        ("0", bytes(3)),
        (1.0, bytes(768)),
        (True, bytes(768)),
    ],
)
def test_decode_rejects_malformed(encoding, data):
    with pytest.raises(CodecError):
        decode_tile(encoding, data)


def test_decode_rejects_non_bytes():
    with pytest.raises(CodecError):
        decode_tile(0, "abc")


def test_zlib_bomb_stops_one_byte_past_a_tile():
    bomb = zlib.compress(bytes(1_000_000), 9)
    assert len(bomb) <= MAX_TILE_DATA
    with pytest.raises(PayloadTooBig):
        decode_tile(2, bomb)
    with pytest.raises(PayloadTooBig):
        decode_tile(2, zlib.compress(bytes(769)))


def test_data_past_the_limit_is_payload_too_big():
    with pytest.raises(PayloadTooBig):
        decode_tile(3, b"\x01" + RED + b"\x00\x00" * 1100)


def _outcome(fn):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn().tobytes())
    except (CodecError, PayloadTooBig) as exc:
        return (type(exc).__name__, str(exc))


_payload = st.one_of(
    st.tuples(st.sampled_from([0, 1, 2, 3, 7]), st.binary(max_size=40)),
    st.builds(
        lambda n, colours, runs: (3, bytes([n]) + colours + bytes(b for run in runs for b in run)),
        st.integers(0, 4),
        st.binary(min_size=0, max_size=12),
        st.lists(st.tuples(st.integers(0, 255), st.integers(0, 4)), max_size=6),
    ),
    st.integers(0, 8).map(lambda n: encode_tile((bytes(range(n, n + 3)) * 256)[:768])),
    st.integers(0, 8).map(
        lambda n: encode_tile(np.repeat(np.arange(n, n + 16, dtype=np.uint8), 48).tobytes())
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_payload, max_size=6))
def test_decode_tiles_matches_decode_tile_one_by_one(payloads) -> None:  # type: ignore[no-untyped-def]
    """The batch decode: the same pixels, or the error of the first bad tile."""

    def one_by_one() -> np.ndarray:
        out = np.empty((len(payloads), 768), dtype=np.uint8)
        for row, (encoding, data) in enumerate(payloads):
            out[row] = decode_tile(encoding, data)
        return out

    assert _outcome(lambda: decode_tiles(payloads)) == _outcome(one_by_one)
