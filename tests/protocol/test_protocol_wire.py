"""Wire format: exact bytes, round trips, rejections, stream framing."""

from __future__ import annotations

import msgpack  # only to craft hostile inputs; src/ keeps msgpack inside wire.py
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulacra.errors import PayloadTooBig, ProtocolError, UnsupportedVersion
from simulacra.protocol.messages import (
    MAX_SEQ,
    Ack,
    Bye,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Input,
    Message,
    Resync,
    Welcome,
)
from simulacra.protocol.wire import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    MessageReader,
    decode_message,
    encode_message,
    frame_message,
)

# --- exact bytes -------------------------------------------------------------

EXACT: list[tuple[Message, bytes]] = [
    (Ack(5), b"\x93\x01\x05\x05"),
    (Bye("bye"), b"\x93\x01\x07\xa3bye"),
    (Resync(""), b"\x93\x01\x08\xa0"),
    (Error(409, "no"), b"\x94\x01\x06\xcd\x01\x99\xa2no"),
    (Hello("c", "2048", "", "tiles"), b"\x96\x01\x01\xa1c\xa42048\xa0\xa5tiles"),
    (Input(3, "pointer", "", 10, -1, 1), b"\x98\x01\x03\x03\xa7pointer\xa0\x0a\xff\x01"),
    (
        Welcome("s", "u", "view", "2048", 512, 576, 16, 4096, ("2048", "sand")),
        b"\x9b\x01\x02\xa1s\xa1u\xa4view\xa42048\xcd\x02\x00\xcd\x02\x40\x10\xcd\x10\x00"
        b"\x92\xa42048\xa4sand",
    ),
    (
        Frame(7, 3, False, 32, 16, ((1, 4, b"\x00\x02"),), 0xDEADBEEF),
        b"\x99\x01\x04\x07\x03\xc2\x20\x10\x91\x93\x01\x04\xc4\x02\x00\x02\xce\xde\xad\xbe\xef",
    ),
]


@pytest.mark.parametrize(("msg", "data"), EXACT, ids=[type(m).__name__ for m, _ in EXACT])
def test_exact_bytes(msg: Message, data: bytes) -> None:
    assert encode_message(msg) == data
    assert decode_message(data) == msg


def test_version() -> None:
    assert PROTOCOL_VERSION == 1
    assert MAX_MESSAGE_BYTES == 1_048_576


def test_decode_accepts_bytearray_and_memoryview() -> None:
    assert decode_message(bytearray(b"\x93\x01\x05\x05")) == Ack(5)
    assert decode_message(memoryview(b"\x93\x01\x05\x05")) == Ack(5)


# --- round trips ---------------------------------------------------------------

names = st.text(max_size=24) | st.sampled_from(["", "2048", "x" * 256, "é漢🙂"])
texts = st.text(max_size=64) | st.just("y" * 1024)
seqs = st.integers(1, MAX_SEQ)
dims = st.integers(1, 16).map(lambda n: n * 16)


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    width, height = draw(dims), draw(dims)
    tile = st.tuples(
        st.integers(0, (width // 16) * (height // 16) - 1),
        st.integers(0, 4),
        st.binary(max_size=64),
    )
    return Frame(
        seq=draw(seqs),
        input_seq=draw(st.integers(0, MAX_SEQ)),
        keyframe=draw(st.booleans()),
        width=width,
        height=height,
        tiles=tuple(draw(st.lists(tile, max_size=12))),
        checksum=draw(st.integers(0, 2**32 - 1)),
    )


messages = st.one_of(
    st.builds(Hello, names, names, names, st.sampled_from(["tiles", "video"])),
    st.builds(
        Welcome,
        names,
        names,
        st.sampled_from(["control", "view"]),
        names,
        dims,
        dims,
        st.just(16),
        st.integers(0, 65536),
        st.lists(names, max_size=8).map(tuple),
    ),
    st.builds(
        Input,
        seqs,
        st.sampled_from(["key", "pointer", "select"]),
        names,
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(0, 0xFFFF),
    ),
    frames(),
    st.builds(Ack, seqs),
    st.builds(Error, st.sampled_from(list(ErrorCode)), texts),
    st.builds(Bye, texts),
    st.builds(Resync, texts),
)


@settings(deadline=None)  # a deadline is a timing assertion; CI machines vary
@given(messages)
def test_round_trip(msg: Message) -> None:
    data = encode_message(msg)
    assert decode_message(data) == msg
    assert encode_message(decode_message(data)) == data


# --- rejections ----------------------------------------------------------------


def pack(*items: object) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


def test_oversize_rejected_before_parsing() -> None:
    with pytest.raises(PayloadTooBig, match="message is 1048577 bytes, limit 1048576"):
        decode_message(b"\x93" + bytes(MAX_MESSAGE_BYTES))
    # exactly the limit gets parsed (and fails for what it is, not for its size)
    with pytest.raises(ProtocolError) as info:
        decode_message(b"\x93\x01\x05\x05" + bytes(MAX_MESSAGE_BYTES - 4))
    assert type(info.value) is ProtocolError


def test_encode_refuses_oversize() -> None:
    tiles = tuple((i, 1, bytes(4096)) for i in range(300))
    with pytest.raises(PayloadTooBig, match="Frame message is .* bytes, limit 1048576"):
        encode_message(Frame(1, 0, True, 320, 256, tiles, 0))


def test_encode_refuses_non_messages() -> None:
    with pytest.raises(ProtocolError, match="not a protocol message: tuple"):
        encode_message((1, 5, 5))  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [0, 2, -1, 255, 2**64 - 1])
def test_wrong_version(version: int) -> None:
    with pytest.raises(UnsupportedVersion, match=f"protocol version {version} is not supported"):
        decode_message(pack(version, 5, 5))
    with pytest.raises(UnsupportedVersion):
        decode_message(pack(version))  # the version is judged before anything else


REJECTED: list[tuple[bytes, str]] = [
    (b"", "malformed message"),
    (b"\xc1", "malformed message"),  # never-used msgpack byte
    (b"\x93\x01\x05", "malformed message"),  # truncated
    (b"\x93\x01\x05\x05\x00", "malformed message"),  # trailing bytes
    (b"\x05", r"a message must be an array \[version, type, \*fields\]"),
    (b"\x90", r"a message must be an array"),
    (b"\x80", r"a message must be an array"),
    (b"\x91\x01", r"a message must be an array"),
    (pack(True, 5, 5), "version must be an int, got bool"),
    (pack(1.0, 5, 5), "version must be an int, got float"),
    (pack("1", 5, 5), "version must be an int, got str"),
    (pack(1, 10), "unknown message type 10"),
    (pack(1, 0), "unknown message type 0"),
    (pack(1, True, "c", "", "", "tiles"), "unknown message type True"),  # True == 1 in Python
    (pack(1, "5", 5), "unknown message type '5'"),
    (pack(1, None), "unknown message type None"),
    (pack(1, 5), "Ack needs 1 fields, got 0"),
    (pack(1, 5, 5, 5), "Ack needs 1 fields, got 2"),
    (pack(1, 1, "c", "", ""), "Hello needs 4 fields, got 3"),
    (pack(1, 5, True), "Ack.seq must be an int, got bool"),
    (pack(1, 5, 5.0), "Ack.seq must be an int, got float"),
    (pack(1, 5, -3), "Ack.seq must be in 1..9007199254740991, got -3"),
    (pack(1, 5, 0), "Ack.seq must be in 1..9007199254740991, got 0"),
    (pack(1, 5, 2**64 - 1), "Ack.seq must be in 1..9007199254740991"),
    (pack(1, 5, None), "Ack.seq must be an int, got NoneType"),
    (pack(1, 5, b"\x05"), "Ack.seq must be an int, got bytes"),
    (pack(1, 7, b"bye"), "Bye.reason must be a str, got bytes"),
    (pack(1, 7, ["bye"]), "Bye.reason must be a str, got list"),
    (b"\x93\x01\x07\xa1\xff", "malformed message"),  # invalid UTF-8
    (pack(1, 1, "c", "", "", b"tiles"), "Hello.mode must be a str, got bytes"),
    (pack(1, 6, 400.0, "x"), "Error.code must be an int, got float"),
    (pack(1, 6, 418, "x"), "Error.code must be one of"),
    (pack(1, 4, 1, 0, 1, 32, 16, [], 0), "Frame.keyframe must be a bool, got int"),
    (pack(1, 4, 1, 0, True, 32, 16, [[0, 0, "abc"]], 0), r"Frame.tiles\[0\].data must be bytes"),
    (pack(1, 4, 1, 0, True, 32, 16, [[0, 0]], 0), r"Frame.tiles\[0\] must be a list"),
    (pack(1, 4, 1, 0, True, 32, 16, [[0, False, b""]], 0), r"Frame.tiles\[0\].encoding must be"),
    (pack(1, 4, 1, 0, True, 32, 16, None, 0), "Frame.tiles must be a list, got NoneType"),
    (pack(1, 4, 1, 0, True, 32, 16, [], -1), "Frame.checksum must be in 0..4294967295"),
    (pack(1, 2, "s", "u", "view", "", 512, 576, 16, 0, "2048"), "Welcome.apps must be a list"),
    (pack(1, 5, {"seq": 5}), "malformed message"),  # maps never appear
    (pack(1, 5, msgpack.ExtType(1, b"x")), "malformed message"),  # nor ext types
    (b"\x93\x01\x05\xd6\xff\x00\x00\x00\x00", "malformed message"),  # timestamp ext
    (b"\x93\x01\x04\xdd\xff\xff\xff\xff", "malformed message"),  # array header claims 4 G items
    (b"\x93\x01\x07\xc6\xff\xff\xff\xff", "malformed message"),  # bin header claims 4 GiB
    (b"\x93\x01\x07\xdb\x00\x10\x00\x00", "malformed message"),  # str past the limit
    (b"\x91" * 100_000, "malformed message"),  # nested too deep
]


@pytest.mark.parametrize(("data", "message"), REJECTED)
def test_rejects(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        decode_message(data)
    assert type(info.value) is ProtocolError


def test_rejects_text() -> None:
    with pytest.raises(ProtocolError, match="a message must be bytes, got str"):
        decode_message("[1, 5, 5]")  # type: ignore[arg-type]


def test_rejects_bin_past_tile_limit() -> None:
    data = pack(1, 4, 1, 0, True, 32, 16, [[0, 1, bytes(4097)]], 0)
    with pytest.raises(ProtocolError, match=r"tiles\[0\].data must be at most 4096 bytes"):
        decode_message(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_random_bytes(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except ProtocolError:
        return
    # msgpack allows longer forms of the same value, so re-encoding may differ
    assert decode_message(encode_message(msg)) == msg


def test_non_canonical_ints_are_accepted() -> None:
    assert decode_message(b"\x93\x01\x05\xcf\x00\x00\x00\x00\x00\x00\x00\x05") == Ack(5)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=2)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 9), st.lists(msgpack_values, max_size=11))
def test_fuzz_structured(type_id: int, fields: list[object]) -> None:
    # Only ProtocolError may escape; whatever is accepted is a valid message that round-trips.
    try:
        msg = decode_message(pack(1, type_id, *fields))
    except ProtocolError:
        return
    assert decode_message(encode_message(msg)) == msg


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_fuzz_mutated_messages(msg: Message, data: st.DataObject) -> None:
    wire = bytearray(encode_message(msg))
    at = data.draw(st.integers(0, len(wire) - 1))
    wire[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    try:
        mutated = decode_message(bytes(wire[:cut]))
    except ProtocolError:
        return
    assert decode_message(encode_message(mutated)) == mutated


# --- stream framing ------------------------------------------------------------


def test_frame_message_bytes() -> None:
    assert frame_message(Ack(5)) == b"\x00\x00\x00\x04\x93\x01\x05\x05"


SEQUENCE: list[Message] = [m for m, _ in EXACT]


def test_reader_one_byte_at_a_time() -> None:
    stream = b"".join(frame_message(m) for m in SEQUENCE)
    reader = MessageReader()
    got: list[Message] = []
    for i in range(len(stream)):
        reader.feed(stream[i : i + 1])
        got.extend(reader.messages())
    assert got == SEQUENCE
    assert reader.buffered == 0


def test_reader_all_at_once() -> None:
    reader = MessageReader()
    reader.feed(b"".join(frame_message(m) for m in SEQUENCE))
    assert list(reader.messages()) == SEQUENCE
    assert list(reader.messages()) == []


@settings(deadline=None)
@given(st.lists(messages, max_size=5), st.lists(st.integers(1, 40), max_size=20))
def test_reader_any_split(sent: list[Message], cuts: list[int]) -> None:
    stream = b"".join(frame_message(m) for m in sent)
    reader = MessageReader()
    got: list[Message] = []
    pos = 0
    for size in [*cuts, len(stream)]:
        reader.feed(stream[pos : pos + size])
        pos += size
        got.extend(reader.messages())
    assert got == sent


def test_reader_declared_length_over_limit() -> None:
    reader = MessageReader()
    reader.feed(b"\x00\x10\x00")
    with pytest.raises(PayloadTooBig, match="declared message length 1048577 bytes, limit 1048576"):
        reader.feed(b"\x01")


def test_reader_own_limits() -> None:
    reader = MessageReader(max_message_bytes=3)
    with pytest.raises(PayloadTooBig, match="declared message length 4 bytes, limit 3"):
        reader.feed(frame_message(Ack(5)))
    reader = MessageReader(max_buffer_bytes=10)
    reader.feed(bytes(3))
    with pytest.raises(PayloadTooBig, match="stream buffer would hold 11 bytes, limit 10"):
        reader.feed(bytes(8))


def test_reader_bad_message_keeps_framing() -> None:
    reader = MessageReader()
    reader.feed(b"\x00\x00\x00\x01\xc1" + frame_message(Ack(5)))
    it = reader.messages()
    with pytest.raises(ProtocolError, match="malformed message"):
        next(it)
    assert list(reader.messages()) == [Ack(5)]
