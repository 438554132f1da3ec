"""web/tiles.js: CRC-32 and the frame decoder, against zlib, an oracle and the Python encoder."""

from __future__ import annotations

import random
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.browser

SOLID, RAW, ZLIB, PALETTE_RLE, REF = range(5)
TILE_BYTES = 768

# arg: {width, height, slots, frames: [{keyframe, tiles: [[index, encoding, hex]]}]}
# returns the framebuffer (hex) and checksum after each frame, or the error.
APPLY = """
  const dec = new m.FrameDecoder(arg.width, arg.height, {dictionarySlots: arg.slots});
  const out = [];
  for (const f of arg.frames) {
    const tiles = f.tiles.map(([i, e, h]) => [i, e, fromHex(h)]);
    try {
      await dec.apply(tiles, {keyframe: f.keyframe});
      out.push([toHex(dec.framebuffer), dec.checksum()]);
    } catch (e) {
      out.push([e.name, e.message, toHex(dec.framebuffer)]);
    }
  }
  return out;
"""

settings_fast = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def apply_js(js: Any, width: int, height: int, slots: int, frames: list[Any]) -> list[Any]:
    arg = {
        "width": width,
        "height": height,
        "slots": slots,
        "frames": [
            {"keyframe": kf, "tiles": [[i, e, bytes(d).hex()] for i, e, d in tiles]}
            for kf, tiles in frames
        ],
    }
    return js("tiles.js", APPLY, arg)


def palette_rle(palette: list[bytes], indices: list[int]) -> bytes:
    runs = bytearray()
    i = 0
    while i < len(indices):
        j = i
        while j < len(indices) and indices[j] == indices[i] and j - i < 256:
            j += 1
        runs += bytes([j - i - 1, indices[i]])
        i = j
    return bytes([len(palette)]) + b"".join(palette) + bytes(runs)


class Oracle:
    """The spec's decoder, written plainly: what tiles.js must reproduce."""

    def __init__(self, width: int, height: int, slots: int) -> None:
        self.fb = np.zeros((height, width, 3), dtype=np.uint8)
        self.cols = width // 16
        self.slots = slots
        self.dictionary: list[bytes] = []
        self.last_use: list[int] = []
        self.clock = 0

    def use(self, slot: int) -> None:
        self.clock += 1
        self.last_use[slot] = self.clock

    def insert(self, tile: bytes) -> None:
        if self.slots == 0:
            return
        if len(self.dictionary) < self.slots:
            self.dictionary.append(tile)
            self.last_use.append(0)
            slot = len(self.dictionary) - 1
        else:
            slot = min(range(self.slots), key=self.last_use.__getitem__)
            self.dictionary[slot] = tile
        self.use(slot)

    def write(self, index: int, tile: bytes) -> None:
        r, c = divmod(index, self.cols)
        self.fb[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16] = np.frombuffer(
            tile, dtype=np.uint8
        ).reshape(16, 16, 3)


@st.composite
def frame_sequences(draw: st.DrawFn) -> tuple[int, int, int, list[Any], list[str]]:
    """Random tiles of every encoding, REFs included, and the oracle's framebuffers."""
    cols, rows = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    slots = draw(st.sampled_from([0, 1, 3, 8]))
    oracle = Oracle(cols * 16, rows * 16, slots)
    frames: list[Any] = []
    expected: list[str] = []
    for f in range(draw(st.integers(1, 4))):
        keyframe = f == 0 or draw(st.booleans())
        if keyframe:
            oracle.dictionary, oracle.last_use = [], []
            indexes = list(range(cols * rows))
        else:
            indexes = draw(st.lists(st.integers(0, cols * rows - 1), max_size=6, unique=True))
        tiles = []
        for index in indexes:
            kind = draw(st.integers(0, 4))
            rng = random.Random(draw(st.integers(0, 2**32)))
            if kind == REF and oracle.dictionary:
                slot = draw(st.integers(0, len(oracle.dictionary) - 1))
                tile = oracle.dictionary[slot]
                oracle.use(slot)
                tiles.append((index, REF, slot.to_bytes(2, "big")))
            else:
                if kind == SOLID or kind == REF:
                    rgb = rng.randbytes(3)
                    tile, entry = rgb * 256, (SOLID, rgb)
                elif kind == RAW:
                    tile = rng.randbytes(TILE_BYTES)
                    entry = (RAW, tile)
                elif kind == ZLIB:
                    tile = bytes(rng.choice(b"\x00\x40\xff") for _ in range(TILE_BYTES))
                    entry = (ZLIB, zlib.compress(tile))
                else:
                    palette = [rng.randbytes(3) for _ in range(rng.randint(1, 4))]
                    idx = [
                        min(rng.randrange(len(palette) * 4) // 4, len(palette) - 1)
                        for _ in range(256)
                    ]
                    if rng.random() < 0.5:
                        idx.sort()  # long runs, some past 256 pixels' worth of one colour
                    tile = b"".join(palette[i] for i in idx)
                    entry = (PALETTE_RLE, palette_rle(palette, idx))
                oracle.insert(tile)
                tiles.append((index, *entry))
            oracle.write(index, tile)
        frames.append((keyframe, tiles))
        expected.append(oracle.fb.tobytes().hex())
    return cols * 16, rows * 16, slots, frames, expected


@settings_fast
@given(st.lists(st.binary(max_size=2000), min_size=1, max_size=10))
def test_crc32_matches_zlib(js: Any, chunks: list[bytes]) -> None:
    got = js("tiles.js", "return arg.map((h) => m.crc32(fromHex(h)));", [c.hex() for c in chunks])
    assert got == [zlib.crc32(c) for c in chunks]


def test_crc32_continues(js: Any) -> None:
    got = js("tiles.js", "return m.crc32(fromHex('6c6f'), m.crc32(fromHex('68656c')));")
    assert got == zlib.crc32(b"hello") == 907060870


@settings_fast
@given(frame_sequences())
def test_decoder_matches_oracle(js: Any, case: tuple[int, int, int, list[Any], list[str]]) -> None:
    width, height, slots, frames, expected = case
    got = apply_js(js, width, height, slots, frames)
    assert [fb for fb, _ in got] == expected
    assert [crc for _, crc in got] == [zlib.crc32(bytes.fromhex(fb)) for fb in expected]


def test_lru_evicts_least_recently_used(js: Any) -> None:
    a, b, c = b"\x01\x01\x01", b"\x02\x02\x02", b"\x03\x03\x03"
    frames = [
        # slots 0 <- a, 1 <- b; REF 0 makes b the LRU; c evicts b into slot 1
        (True, [(0, SOLID, a), (1, SOLID, b)]),
        (False, [(0, REF, b"\x00\x00"), (1, SOLID, c), (2, REF, b"\x00\x01")]),
    ]
    got = apply_js(js, 48, 16, 2, frames)
    fb = np.frombuffer(bytes.fromhex(got[1][0]), dtype=np.uint8).reshape(16, 48, 3)
    assert [fb[0, x].tobytes() for x in (0, 16, 32)] == [a, c, c]


def test_keyframe_resets_dictionary(js: Any) -> None:
    frames = [
        (True, [(0, SOLID, b"\x01\x02\x03")]),
        (True, [(0, REF, b"\x00\x00")]),
    ]
    got = apply_js(js, 16, 16, 4, frames)
    assert got[1][:2] == ["CodecError", "REF to empty dictionary slot 0"]


def test_matches_python_frame_encoder(js: Any) -> None:
    display = pytest.importorskip("simulacra.codecs.display")
    rng = np.random.default_rng(7)
    width, height = 64, 48
    encoder = display.FrameEncoder(width, height, dictionary_slots=6)
    palette = rng.integers(0, 256, size=(4, 3), dtype=np.uint8)
    frames, checksums = [], []
    fb = np.zeros((height, width, 3), dtype=np.uint8)
    for n in range(6):
        # a few flat blocks, a few repeated textures (dictionary hits), some noise
        for _ in range(5):
            r, c = rng.integers(0, height // 16), rng.integers(0, width // 16)
            choice = rng.integers(0, 3)
            if choice == 0:
                fb[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16] = palette[rng.integers(0, 4)]
            elif choice == 1:
                fb[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16] = palette[
                    (np.arange(256).reshape(16, 16) // 37) % 4
                ]
            else:
                fb[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16] = rng.integers(
                    0, 256, size=(16, 16, 3), dtype=np.uint8
                )
        tiles = encoder.encode(fb, keyframe=n in (0, 4))
        frames.append((n in (0, 4), tiles))
        checksums.append((fb.tobytes().hex(), display.framebuffer_checksum(fb)))
    assert [tuple(x) for x in apply_js(js, width, height, 6, frames)] == checksums


@pytest.mark.parametrize(
    ("tile", "error"),
    [
        ((0, SOLID, b"\x01\x02"), ["CodecError", "SOLID tile needs 3 bytes"]),
        ((0, RAW, b"\x00" * 767), ["CodecError", "RAW tile needs 768 bytes"]),
        ((0, ZLIB, b"not zlib"), ["CodecError", "ZLIB tile is not a valid zlib stream"]),
        ((0, ZLIB, zlib.compress(b"\x00" * 700)), ["CodecError", "ZLIB tile inflates to 700 bytes, not 768"]),
        ((0, ZLIB, zlib.compress(b"\x00" * 1_000_000)), ["PayloadTooBig", "ZLIB tile inflates past 768 bytes"]),
        ((0, ZLIB, zlib.compress(b"\x00" * 800)), ["PayloadTooBig", "ZLIB tile inflates past 768 bytes"]),
        ((0, ZLIB, zlib.compress(b"\x00" * 768) + b"x"), ["CodecError", "ZLIB tile is not a valid zlib stream"]),
        ((0, PALETTE_RLE, b""), ["CodecError", "PALETTE_RLE tile is empty"]),
        ((0, PALETTE_RLE, b"\x00"), ["CodecError", "PALETTE_RLE palette size must be 1..255"]),
        ((0, PALETTE_RLE, b"\x02\x00\x00\x00"), ["CodecError", "PALETTE_RLE palette is truncated"]),
        ((0, PALETTE_RLE, b"\x01\x00\x00\x00\xff"), ["CodecError", "PALETTE_RLE runs are truncated"]),
        ((0, PALETTE_RLE, b"\x01\x00\x00\x00\xff\x01"), ["CodecError", "PALETTE_RLE index 1 outside palette of 1"]),
        ((0, PALETTE_RLE, b"\x01\x00\x00\x00\xfe\x00"), ["CodecError", "PALETTE_RLE runs cover 255 of 256 pixels"]),
        ((0, PALETTE_RLE, b"\x01\x00\x00\x00" + b"\xff\x00" * 2), ["CodecError", "PALETTE_RLE runs cover more than 256 pixels"]),
        ((0, REF, b"\x00\x01"), ["CodecError", "REF to empty dictionary slot 1"]),
        ((0, REF, b"\x00"), ["CodecError", "REF tile needs 2 bytes"]),
        ((0, 5, b""), ["CodecError", "unknown tile encoding 5"]),
        ((2, SOLID, b"\x01\x02\x03"), ["CodecError", "tile index 2 out of range"]),
        ((0, RAW, b"\x00" * 2049), ["PayloadTooBig", "tile data of 2049 bytes is past 2048"]),
    ],
)  # fmt: skip
def test_bad_tiles_change_nothing(js: Any, tile: tuple[int, int, bytes], error: list[str]) -> None:
    # a good tile first: a rejected frame must not apply it either
    frames = [(False, [(1, SOLID, b"\x09\x09\x09"), tile])]
    got = apply_js(js, 32, 16, 4, frames)[0]
    assert got[0] == error[0]
    assert got[1].startswith(error[1])
    assert got[2] == "00" * (32 * 16 * 3)


def test_too_many_tiles_and_no_dictionary(js: Any) -> None:
    frames = [
        (True, [(0, SOLID, b"\x00\x00\x00")] * 3),
        (True, [(0, SOLID, b"\x00\x00\x00"), (1, REF, b"\x00\x00")]),
    ]
    got = apply_js(js, 32, 16, 0, frames)
    assert got[0][:2] == ["CodecError", "3 tiles for a 2-tile framebuffer"]
    assert got[1][:2] == ["CodecError", "REF tile without a dictionary"]


@pytest.mark.parametrize(
    ("width", "height", "slots", "error"),
    [
        (0, 16, 0, "framebuffer 0x16 is not a positive multiple of 16"),
        (24, 16, 0, "framebuffer 24x16 is not a positive multiple of 16"),
        (16, 16, 70000, "dictionary_slots 70000 outside 0..65536"),
    ],
)
def test_decoder_rejects_bad_geometry(
    js: Any, width: int, height: int, slots: int, error: str
) -> None:
    body = """
      try { new m.FrameDecoder(arg[0], arg[1], {dictionarySlots: arg[2]}); return "ok"; }
      catch (e) { return e.message; }
    """
    assert js("tiles.js", body, [width, height, slots]) == error


# -- packed mode: a recorded stream of PackedFrame payloads, decoded by tiles.js --

# arg: {width, height, slots, frames: [{keyframe, count, size, data}]}; after each
# frame: the unpacked tiles (hex), framebuffer (hex) and checksum, or the error.
APPLY_PACKED = """
  const dec = new m.FrameDecoder(arg.width, arg.height, {dictionarySlots: arg.slots});
  const inflater = new m.InflateStream();
  const out = [];
  for (const f of arg.frames) {
    try {
      const raw = await inflater.inflate(fromHex(f.data), f.size, {keyframe: f.keyframe});
      const tiles = m.unpackTiles(raw, f.count, dec.tileCount);
      await dec.apply(tiles, {keyframe: f.keyframe});
      out.push([
        tiles.map(([i, e, d]) => [i, e, toHex(d)]),
        toHex(dec.framebuffer),
        dec.checksum(),
        dec.tableChecksum(),
      ]);
    } catch (e) {
      out.push([e.name, e.message]);
    }
  }
  return out;
"""


def recorded_stream(seed: int, frames: int, keyframes: set[int]) -> tuple[list[Any], list[Any]]:
    """PackedFrame payloads of a Python encoder and what the client must end up with."""
    from simulacra.codecs.display import (
        DeflateStream,
        FrameEncoder,
        framebuffer_checksum,
        pack_tiles,
        tile_table_checksum,
        unpack_tiles,
    )

    rng = np.random.default_rng(seed)
    width, height = 64, 48
    encoder, stream = FrameEncoder(width, height, dictionary_slots=6), DeflateStream()
    palette = rng.integers(0, 256, size=(4, 3), dtype=np.uint8)
    fb = np.zeros((height, width, 3), dtype=np.uint8)
    sent, expected = [], []
    for n in range(frames):
        for _ in range(int(rng.integers(0, 6))):
            r, c = rng.integers(0, height // 16), rng.integers(0, width // 16)
            block = fb[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16]
            choice = rng.integers(0, 3)
            if choice == 0:
                block[:] = palette[rng.integers(0, 4)]
            elif choice == 1:
                block[:] = palette[(np.arange(256).reshape(16, 16) // 37 + n) % 4]
            else:
                block[:] = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
        keyframe = n == 0 or n in keyframes
        tiles = encoder.encode(fb, keyframe=keyframe)
        raw = pack_tiles(tiles)
        data = stream.compress(raw, keyframe=keyframe)
        sent.append(
            {"keyframe": keyframe, "count": len(tiles), "size": len(raw), "data": data.hex()}
        )
        unpacked = [[i, e, d.hex()] for i, e, d in unpack_tiles(raw, len(tiles), 12)]
        expected.append(
            [unpacked, fb.tobytes().hex(), framebuffer_checksum(fb), tile_table_checksum(fb)]
        )
    return sent, expected


def test_tile_table_audit_catches_pixels_changed_behind_the_decoder(js: Any) -> None:
    from simulacra.codecs.display import tile_table_checksum
    from simulacra.codecs.display.tiles import AUDIT_FRAMES

    body = """
      const dec = new m.FrameDecoder(64, 48, {dictionarySlots: 0});
      const first = dec.tableChecksum();
      dec.framebuffer[64 * 3 * 40 + 5] = 9;  // tile 9 changes; no frame wrote it
      const seen = [];
      for (let k = 0; k < m.AUDIT_FRAMES; k++) seen.push(dec.tableChecksum());
      return [m.AUDIT_FRAMES, first, seen];
    """
    fb = np.zeros((48, 64, 3), np.uint8)
    audit, first, seen = js("tiles.js", body, None)
    assert audit == AUDIT_FRAMES
    assert first == tile_table_checksum(fb)
    fb.reshape(-1)[64 * 3 * 40 + 5] = 9
    assert seen[0] != tile_table_checksum(fb)  # the table still vouches for the old tile
    assert seen[-1] == tile_table_checksum(fb)  # until the audit reaches it


def test_packed_stream_matches_python_byte_for_byte(js: Any) -> None:
    sent, expected = recorded_stream(11, 14, keyframes={6, 7})
    arg = {"width": 64, "height": 48, "slots": 6, "frames": sent}
    assert js("tiles.js", APPLY_PACKED, arg) == expected
    assert any(f["size"] == 0 for f in sent)  # frames without tiles leave the stream alone


def test_packed_stream_errors_and_recovery_at_a_keyframe(js: Any) -> None:
    sent, expected = recorded_stream(5, 6, keyframes={4})
    third = dict(sent[2])
    # more output than declared, then a stream lost until the keyframe at frame 4
    frames = [sent[0], sent[1], {**third, "size": third["size"] - 1}, sent[3], sent[4], sent[5]]
    got = js("tiles.js", APPLY_PACKED, {"width": 64, "height": 48, "slots": 6, "frames": frames})
    assert got[:2] == expected[:2]
    assert got[2][0] == "PayloadTooBig"
    assert got[3] == ["CodecError", "packed data before the first keyframe"]
    assert got[4:] == expected[4:]


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ({"keyframe": True, "count": 1, "size": 9, "data": "78da"}, ["CodecError", "packed chunk inflates to 0 bytes, declared 9"]),
        ({"keyframe": True, "count": 1, "size": 4, "data": "78daffffffff"}, ["CodecError", "packed stream: "]),
        ({"keyframe": True, "count": 1, "size": 2**20 + 1, "data": ""}, ["PayloadTooBig", "packed tiles of 1048577 bytes, limit 1048576"]),
        ({"keyframe": False, "count": 1, "size": 3, "data": "00"}, ["CodecError", "packed data before the first keyframe"]),
        ({"keyframe": True, "count": 0, "size": 0, "data": "00"}, ["CodecError", "a frame without tiles carries no stream data"]),
    ],
)  # fmt: skip
def test_packed_stream_rejects(js: Any, frame: dict[str, Any], error: list[str]) -> None:
    got = js("tiles.js", APPLY_PACKED, {"width": 16, "height": 16, "slots": 4, "frames": [frame]})
    # The browser words zlib's own complaints; ours are exact.
    assert len(got) == 1 and got[0][0] == error[0] and got[0][1].startswith(error[1])


@pytest.mark.parametrize(
    ("raw", "count", "error"),
    [
        ("00", 1, ["CodecError", "packed tiles end inside a tile"]),
        ("0000010203" "00", 1, ["CodecError", "1 bytes after the last packed tile"]),
        ("000700", 1, ["CodecError", "unknown tile encoding 7"]),
        ("0c00010203", 1, ["CodecError", "tile index 12 outside 0..11"]),
        ("ffffffff0f", 1, ["CodecError", "packed number past 12"]),
        ("80", 1, ["CodecError", "packed tiles end inside a number"]),
        ("000401", 1, ["CodecError", "REF slot -1 outside 0..65535"]),
        ("00048080" "08", 1, ["CodecError", "REF slot 65536 outside 0..65535"]),
        ("00038110", 1, ["CodecError", "packed number past 2048"]),
        ("", 13, ["PayloadTooBig", "frame lists 13 tiles; the framebuffer has 12"]),
    ],
)  # fmt: skip
def test_unpack_rejects_like_python(js: Any, raw: str, count: int, error: list[str]) -> None:
    from simulacra.codecs.display import unpack_tiles

    body = """
      try { m.unpackTiles(fromHex(arg.raw), arg.count, 12); return null; }
      catch (e) { return [e.name, e.message]; }
    """
    assert js("tiles.js", body, {"raw": raw, "count": count}) == error
    with pytest.raises(Exception, match=error[1].split(" outside")[0]):
        unpack_tiles(bytes.fromhex(raw), count, 12)


def test_inflate_stream_reads_big_chunks_whole(js: Any) -> None:
    from simulacra.codecs.display import DeflateStream

    rng = random.Random(3)
    stream = DeflateStream()
    # incompressible and compressible chunks, up to the 1 MiB limit: many reads each
    raws = [rng.randbytes(300_000), b"\x07" * (1 << 20), rng.randbytes(70_000) * 3]
    chunks = [stream.compress(r, keyframe=i == 0).hex() for i, r in enumerate(raws)]
    body = """
      const s = new m.InflateStream();
      const out = [];
      for (const [i, c] of arg.chunks.entries()) {
        const raw = await s.inflate(fromHex(c), arg.sizes[i], {keyframe: i === 0});
        out.push([raw.length, m.crc32(raw)]);
      }
      return out;
    """
    got = js("tiles.js", body, {"chunks": chunks, "sizes": [len(r) for r in raws]})
    assert got == [[len(r), zlib.crc32(r)] for r in raws]
