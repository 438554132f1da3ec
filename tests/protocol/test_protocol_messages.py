"""Messages validate themselves on construction and name the bad field."""

from __future__ import annotations

import dataclasses
from enum import IntEnum

import pytest

from simulacra.errors import ProtocolError
from simulacra.protocol.messages import (
    MAX_SEQ,
    MESSAGE_CLASSES,
    Ack,
    Bye,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Input,
    MessageType,
    PackedFrame,
    Resync,
    Welcome,
)


def welcome(**changes: object) -> Welcome:
    fields = dict(
        session="s",
        user="u",
        role="control",
        app="2048",
        width=512,
        height=576,
        tile_size=16,
        dictionary_slots=4096,
        apps=("2048", "sand"),
    )
    fields.update(changes)
    return Welcome(**fields)  # type: ignore[arg-type]


def frame(**changes: object) -> Frame:
    fields = dict(seq=1, input_seq=0, keyframe=True, width=32, height=16, tiles=(), checksum=0)
    fields.update(changes)
    return Frame(**fields)  # type: ignore[arg-type]


def test_message_type_numbers() -> None:
    assert [(t.name, int(t)) for t in MessageType] == [
        ("HELLO", 1),
        ("WELCOME", 2),
        ("INPUT", 3),
        ("FRAME", 4),
        ("ACK", 5),
        ("ERROR", 6),
        ("BYE", 7),
        ("RESYNC", 8),
        ("PACKED_FRAME", 9),
    ]
    assert MESSAGE_CLASSES == {
        MessageType.HELLO: Hello,
        MessageType.WELCOME: Welcome,
        MessageType.INPUT: Input,
        MessageType.FRAME: Frame,
        MessageType.ACK: Ack,
        MessageType.ERROR: Error,
        MessageType.BYE: Bye,
        MessageType.RESYNC: Resync,
        MessageType.PACKED_FRAME: PackedFrame,
    }


def test_error_code_numbers() -> None:
    assert [int(c) for c in ErrorCode] == [400, 403, 404, 409, 413, 426, 500]


def test_field_order_is_the_wire_order() -> None:
    order = {
        cls.__name__: [f.name for f in dataclasses.fields(cls)] for cls in MESSAGE_CLASSES.values()
    }
    assert order == {
        "Hello": ["client", "app", "session", "mode"],
        "Welcome": [
            "session",
            "user",
            "role",
            "app",
            "width",
            "height",
            "tile_size",
            "dictionary_slots",
            "apps",
        ],
        "Input": ["seq", "kind", "key", "x", "y", "buttons"],
        "Frame": ["seq", "input_seq", "keyframe", "width", "height", "tiles", "checksum"],
        "Ack": ["seq"],
        "Error": ["code", "message"],
        "Bye": ["reason"],
        "Resync": ["reason"],
        "PackedFrame": [
            "seq",
            "input_seq",
            "keyframe",
            "width",
            "height",
            "count",
            "size",
            "data",
            "checksum",
        ],
    }


def test_defaults() -> None:
    assert Hello("simulacra-headless/0.1") == Hello("simulacra-headless/0.1", "", "", "tiles")
    assert Input(1, "key", "ArrowLeft") == Input(1, "key", "ArrowLeft", 0, 0, 0)
    assert Bye() == Bye("")
    assert Resync() == Resync("")


def test_frozen_slotted_hashable() -> None:
    msg = Ack(3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.seq = 4  # type: ignore[misc]
    assert not hasattr(msg, "__dict__")
    assert len({Ack(3), Ack(3), frame(), welcome()}) == 3


def test_normalizes_sequences_bytes_and_enums() -> None:
    class Enc(IntEnum):
        REF = 4

    f = frame(tiles=[[1, Enc.REF, bytearray(b"\x00\x01")], (0, 0, memoryview(b"abc"))])
    assert f.tiles == ((1, 4, b"\x00\x01"), (0, 0, b"abc"))
    assert type(f.tiles[0][1]) is int
    assert type(f.tiles[0][2]) is bytes
    assert welcome(apps=["a", "b"]).apps == ("a", "b")
    err = Error(404, "no such app")
    assert err.code is ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Ack(0), "Ack.seq must be in 1..9007199254740991, got 0"),
        (lambda: Ack(-1), "Ack.seq must be in 1..9007199254740991, got -1"),
        (lambda: Ack(MAX_SEQ + 1), "Ack.seq must be in 1..9007199254740991, got 9007199254740992"),
        (lambda: Ack(True), "Ack.seq must be an int, got bool"),
        (lambda: Ack(1.0), "Ack.seq must be an int, got float"),
        (lambda: Ack("1"), "Ack.seq must be an int, got str"),
        (lambda: Hello(b"x"), "Hello.client must be a str, got bytes"),
        (lambda: Hello("x" * 257), "Hello.client must be at most 256 characters, got 257"),
        (
            lambda: Hello("x", mode="audio"),
            "Hello.mode must be one of tiles, video, packed; got 'audio'",
        ),
        (lambda: Hello("\ud800"), "Hello.client is not valid UTF-8 text"),
        (lambda: welcome(role="admin"), "Welcome.role must be one of control, view; got 'admin'"),
        (lambda: welcome(width=0), "Welcome.width must be in 16..4096, got 0"),
        (lambda: welcome(width=4112), "Welcome.width must be in 16..4096, got 4112"),
        (lambda: welcome(height=24), "Welcome.height must be a multiple of 16, got 24"),
        (lambda: welcome(tile_size=32), "Welcome.tile_size must be in 16..16, got 32"),
        (lambda: welcome(dictionary_slots=65537), "Welcome.dictionary_slots must be in 0..65536"),
        (lambda: welcome(apps="2048"), "Welcome.apps must be a list, got str"),
        (lambda: welcome(apps=["a", 1]), r"Welcome.apps\[1\] must be a str, got int"),
        (lambda: welcome(apps=["a"] * 257), "Welcome.apps must have at most 256 items, got 257"),
        (lambda: Input(1, "scroll"), "Input.kind must be one of key, pointer, select"),
        (lambda: Input(1, "pointer", x=2**31), "Input.x must be in -2147483648..2147483647"),
        (lambda: Input(1, "pointer", buttons=-1), "Input.buttons must be in 0..65535, got -1"),
        (lambda: frame(seq=0), "Frame.seq must be in 1..9007199254740991, got 0"),
        (lambda: frame(input_seq=-1), "Frame.input_seq must be in 0..9007199254740991, got -1"),
        (lambda: frame(keyframe=1), "Frame.keyframe must be a bool, got int"),
        (lambda: frame(checksum=2**32), "Frame.checksum must be in 0..4294967295, got 4294967296"),
        (lambda: frame(tiles={}), "Frame.tiles must be a list, got dict"),
        (
            lambda: frame(tiles=[(0, 0)]),
            r"Frame.tiles\[0\] must be a list \[index, encoding, data\]",
        ),
        (
            lambda: frame(tiles=[b"abc"]),
            r"Frame.tiles\[0\] must be a list \[index, encoding, data\]",
        ),
        (lambda: frame(tiles=[(0, 5, b"")]), r"Frame.tiles\[0\].encoding must be in 0..4, got 5"),
        (
            lambda: frame(tiles=[(-1, 0, b"")]),
            r"Frame.tiles\[0\].index must be in 0..65535, got -1",
        ),
        (lambda: frame(tiles=[(0, 0, "abc")]), r"Frame.tiles\[0\].data must be bytes, got str"),
        (
            lambda: frame(tiles=[(0, 1, bytes(4097))]),
            r"Frame.tiles\[0\].data must be at most 4096 bytes, got 4097",
        ),
        (
            lambda: frame(tiles=[(2, 0, b"")]),
            r"Frame.tiles\[0\].index must be below 2 for a 32x16 frame, got 2",
        ),
        (
            lambda: Error(401, "x"),
            "Error.code must be one of 400, 403, 404, 409, 413, 426, 500; got 401",
        ),
        (lambda: Error(True, "x"), "Error.code must be an int, got bool"),
        (lambda: Error(400, "x" * 1025), "Error.message must be at most 1024 characters, got 1025"),
        (lambda: Bye(None), "Bye.reason must be a str, got NoneType"),
        (lambda: Resync(1), "Resync.reason must be a str, got int"),
    ],
)
def test_rejects_bad_fields(make: object, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        make()  # type: ignore[operator]


def test_limits_are_inclusive() -> None:
    assert Hello("x" * 256).client == "x" * 256
    assert Error(500, "y" * 1024).message == "y" * 1024
    assert Ack(MAX_SEQ).seq == MAX_SEQ
    assert welcome(width=4096, height=4096, dictionary_slots=65536, apps=["a"] * 256).width == 4096
    assert frame(checksum=2**32 - 1, tiles=[(1, 1, bytes(4096))]).checksum == 2**32 - 1
    big = frame(width=4096, height=4096, tiles=[(i, 4, b"") for i in range(65536)])
    assert len(big.tiles) == 65536
    with pytest.raises(ProtocolError, match="Frame.tiles must have at most 65536 items, got 65537"):
        frame(width=4096, height=4096, tiles=[(0, 4, b"")] * 65537)


def test_packed_frame_exact_bytes() -> None:
    from simulacra.protocol.wire import decode_message, encode_message

    msg = PackedFrame(3, 2, False, 32, 16, 1, 4, b"\x01\x02", 0xDEADBEEF)
    data = encode_message(msg)
    assert data == bytes.fromhex("9b 01 09 03 02 c2 20 10 01 04 c4 02 01 02 ce de ad be ef")
    assert decode_message(data) == msg


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PackedFrame(1, 0, True, 16, 16, 2, 4, b"", 0), "count must be at most 1"),
        (lambda: PackedFrame(1, 0, True, 16, 16, 1, 0, b"", 0), "size must be 0 exactly when"),
        (lambda: PackedFrame(1, 0, True, 16, 16, 0, 0, "x", 0), "data must be bytes, got str"),
        (lambda: PackedFrame(1, 0, True, 16, 16, 1, 2**20 + 1, b"", 0), "size must be in"),
    ],
)
def test_packed_frame_rejects(make: object, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        make()  # type: ignore[operator]
