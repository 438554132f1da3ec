"""Protocol v1 messages: one frozen, slotted dataclass per message type.

::

    wire array  [version, type, f1, f2, ...]
                           │     └─ fields, in dataclass order ─┐
                           └─► MessageType ─► message class ─► cls(*fields)
                                                               └─ __post_init__ checks every
                                                                  field: type, range, length

A message is valid the moment it exists: construction checks every field and
raises ``ProtocolError`` naming the field (``Input.seq must be in 1..…, got 0``).
The same checks guard both directions, so a server cannot send what a client
would reject. Sequences (``Frame.tiles``, ``Welcome.apps``) are stored as
tuples and byte-likes as ``bytes``, so messages stay hashable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any, ClassVar, TypeAlias

from simulacra.errors import ProtocolError

__all__ = [
    "MessageType",
    "ErrorCode",
    "Hello",
    "Welcome",
    "Input",
    "Frame",
    "PackedFrame",
    "Ack",
    "Error",
    "Bye",
    "Resync",
    "Message",
    "MESSAGE_CLASSES",
    "TILE_SIZE",
    "MAX_SEQ",
    "MAX_NAME_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_DIMENSION",
    "MAX_TILES",
    "MAX_TILE_BYTES",
    "MAX_APPS",
    "MAX_DICTIONARY_SLOTS",
    "MAX_PACKED_BYTES",
    "MODES",
]

TILE_SIZE = 16
MAX_SEQ = 2**53 - 1  # the largest integer a browser's msgpack decoder holds exactly
MAX_NAME_CHARS = 256  # names: client, app, session, mode, user, role, key, apps[i]
MAX_TEXT_CHARS = 1024  # free text: Error.message, Bye.reason, Resync.reason
MAX_DIMENSION = 4096  # pixels; 4096 x 4096 is exactly MAX_TILES tiles, so a keyframe fits
MAX_TILES = 65536
MAX_TILE_BYTES = 4096
MAX_APPS = 256
MAX_DICTIONARY_SLOTS = 65536  # REF carries a 2-byte slot number
MAX_PACKED_BYTES = 1 << 20  # a PackedFrame's tile list, uncompressed (PackedFrame.size)
MODES = ("tiles", "video", "packed")
_INT32 = 2**31
_UINT32 = 2**32


class MessageType(IntEnum):
    HELLO = 1
    WELCOME = 2
    INPUT = 3
    FRAME = 4
    ACK = 5
    ERROR = 6
    BYE = 7
    RESYNC = 8
    PACKED_FRAME = 9


class ErrorCode(IntEnum):
    MALFORMED = 400
    FORBIDDEN = 403
    NOT_FOUND = 404
    OUT_OF_STATE = 409
    PAYLOAD_TOO_BIG = 413
    UNSUPPORTED_VERSION = 426
    SERVER_ERROR = 500


# --- field checks: each takes ("Class.field", value) and returns the value to store ---

Check = Callable[[str, Any], Any]


def _kind(value: object) -> str:
    return type(value).__name__


def _int(lo: int, hi: int, *, multiple_of: int = 1) -> Check:
    def check(where: str, value: Any) -> int:
        # bool is an int subclass in Python but a distinct type on the wire
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"{where} must be an int, got {_kind(value)}")
        if not lo <= value <= hi:
            raise ProtocolError(f"{where} must be in {lo}..{hi}, got {value}")
        if value % multiple_of:
            raise ProtocolError(f"{where} must be a multiple of {multiple_of}, got {value}")
        return int(value)

    return check


def _str(max_chars: int, choices: tuple[str, ...] = ()) -> Check:
    def check(where: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ProtocolError(f"{where} must be a str, got {_kind(value)}")
        if len(value) > max_chars:
            raise ProtocolError(f"{where} must be at most {max_chars} characters, got {len(value)}")
        if choices and value not in choices:
            raise ProtocolError(f"{where} must be one of {', '.join(choices)}; got {value[:64]!r}")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ProtocolError(f"{where} is not valid UTF-8 text") from None
        return str(value)

    return check


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{where} must be a bool, got {_kind(value)}")
    return value


def _error_code(where: str, value: Any) -> ErrorCode:
    code = _int(0, 999)(where, value)
    try:
        return ErrorCode(code)
    except ValueError:
        known = ", ".join(str(int(c)) for c in ErrorCode)
        raise ProtocolError(f"{where} must be one of {known}; got {code}") from None


def _sequence(where: str, value: Any, max_items: int) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise ProtocolError(f"{where} must be a list, got {_kind(value)}")
    if len(value) > max_items:
        raise ProtocolError(f"{where} must have at most {max_items} items, got {len(value)}")
    return tuple(value)


def _names(where: str, value: Any) -> tuple[str, ...]:
    check = _str(MAX_NAME_CHARS)
    return tuple(check(f"{where}[{i}]", v) for i, v in enumerate(_sequence(where, value, MAX_APPS)))


_tile_index = _int(0, MAX_TILES - 1)
_tile_encoding = _int(0, 4)  # SOLID, RAW, ZLIB, PALETTE_RLE, REF; the display codec owns the data


def _tiles(where: str, value: Any) -> tuple[tuple[int, int, bytes], ...]:
    tiles: list[tuple[int, int, bytes]] = []
    append = tiles.append
    # The common tile (ints in range, bytes data) passes a few inline tests; the
    # field checks with their messages run only for a tile that fails them.
    for tile in _sequence(where, value, MAX_TILES):
        if type(tile) in (list, tuple) and len(tile) == 3:
            index, encoding, data = tile
            if (
                type(index) is int
                and type(encoding) is int
                and type(data) is bytes
                and 0 <= index < MAX_TILES
                and 0 <= encoding <= 4
                and len(data) <= MAX_TILE_BYTES
            ):
                append(tile if type(tile) is tuple else (index, encoding, data))
                continue
        append(_tile(f"{where}[{len(tiles)}]", tile))
    return tuple(tiles)


def _tile(at: str, tile: Any) -> tuple[int, int, bytes]:
    if not isinstance(tile, list | tuple) or len(tile) != 3:
        raise ProtocolError(f"{at} must be a list [index, encoding, data]")
    index, encoding, data = tile
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"{at}.data must be bytes, got {_kind(data)}")
    data = bytes(data)
    if len(data) > MAX_TILE_BYTES:
        raise ProtocolError(f"{at}.data must be at most {MAX_TILE_BYTES} bytes, got {len(data)}")
    return (_tile_index(f"{at}.index", index), _tile_encoding(f"{at}.encoding", encoding), data)


_NO_DEFAULT: Any = object()


def _spec(check: Check, default: Any = _NO_DEFAULT) -> Any:
    if default is _NO_DEFAULT:
        return field(metadata={"check": check})
    return field(default=default, metadata={"check": check})


_NAME = _str(MAX_NAME_CHARS)
_TEXT = _str(MAX_TEXT_CHARS)
_SEQ = _int(1, MAX_SEQ)
_DIMENSION = _int(TILE_SIZE, MAX_DIMENSION, multiple_of=TILE_SIZE)


class _Message:
    """Shared construction check; subclasses are frozen, slotted dataclasses."""

    __slots__ = ()
    TYPE: ClassVar[MessageType]

    def __post_init__(self) -> None:
        name = type(self).__name__
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            checked = f.metadata["check"](f"{name}.{f.name}", value)
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        self._check_fields()

    def _check_fields(self) -> None:
        """Checks that span fields; most messages have none."""


@dataclass(frozen=True, slots=True)
class Hello(_Message):
    """Client -> server, first message of a connection."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO
    client: str = _spec(_NAME)  # agent, e.g. "simulacra-headless/0.1"
    app: str = _spec(_NAME, "")  # "" = server default
    session: str = _spec(_NAME, "")  # "" = the user's own session of that app
    mode: str = _spec(_str(MAX_NAME_CHARS, MODES), "tiles")


@dataclass(frozen=True, slots=True)
class Welcome(_Message):
    """Server -> client, answers Hello; streaming starts after it."""

    TYPE: ClassVar[MessageType] = MessageType.WELCOME
    session: str = _spec(_NAME)
    user: str = _spec(_NAME)
    role: str = _spec(_str(MAX_NAME_CHARS, ("control", "view")))
    app: str = _spec(_NAME)
    width: int = _spec(_DIMENSION)
    height: int = _spec(_DIMENSION)
    tile_size: int = _spec(_int(TILE_SIZE, TILE_SIZE))
    dictionary_slots: int = _spec(_int(0, MAX_DICTIONARY_SLOTS))
    apps: tuple[str, ...] = _spec(_names)


@dataclass(frozen=True, slots=True)
class Input(_Message):
    """Client -> server, one user input; seq increases per connection."""

    TYPE: ClassVar[MessageType] = MessageType.INPUT
    seq: int = _spec(_SEQ)
    kind: str = _spec(_str(MAX_NAME_CHARS, ("key", "pointer", "select")))
    key: str = _spec(_NAME, "")
    x: int = _spec(_int(-_INT32, _INT32 - 1), 0)
    y: int = _spec(_int(-_INT32, _INT32 - 1), 0)
    buttons: int = _spec(_int(0, 0xFFFF), 0)


@dataclass(frozen=True, slots=True)
class Frame(_Message):
    """Server -> client, the tiles that changed; seq increases per connection."""

    TYPE: ClassVar[MessageType] = MessageType.FRAME
    seq: int = _spec(_SEQ)
    input_seq: int = _spec(_int(0, MAX_SEQ))  # highest Input seq applied; 0 = none
    keyframe: bool = _spec(_bool)
    width: int = _spec(_DIMENSION)
    height: int = _spec(_DIMENSION)
    tiles: tuple[tuple[int, int, bytes], ...] = _spec(_tiles)  # (index, encoding, data)
    checksum: int = _spec(_int(0, _UINT32 - 1))  # zlib.crc32 of the framebuffer after the tiles

    def _check_fields(self) -> None:
        count = (self.width // TILE_SIZE) * (self.height // TILE_SIZE)
        for i, (index, _, _) in enumerate(self.tiles):
            if index >= count:
                raise ProtocolError(
                    f"Frame.tiles[{i}].index must be below {count} for a "
                    f"{self.width}x{self.height} frame, got {index}"
                )


def _data(where: str, value: Any) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ProtocolError(f"{where} must be bytes, got {_kind(value)}")
    return bytes(value)


@dataclass(frozen=True, slots=True)
class PackedFrame(_Message):
    """Server -> client in "packed" mode: a Frame whose tiles ride a deflate stream.

    ``data`` is this frame's chunk of the connection's zlib stream; it inflates
    to ``size`` bytes, the packed list of ``count`` tiles (docs/protocol.md).
    """

    TYPE: ClassVar[MessageType] = MessageType.PACKED_FRAME
    seq: int = _spec(_SEQ)
    input_seq: int = _spec(_int(0, MAX_SEQ))
    keyframe: bool = _spec(_bool)
    width: int = _spec(_DIMENSION)
    height: int = _spec(_DIMENSION)
    count: int = _spec(_int(0, MAX_TILES))  # tiles in the packed list
    size: int = _spec(_int(0, MAX_PACKED_BYTES))  # bytes ``data`` inflates to
    data: bytes = _spec(_data)
    # The tile-table checksum (CRC-32 of the per-tile CRC-32s), not Frame's whole-picture CRC.
    checksum: int = _spec(_int(0, _UINT32 - 1))

    def _check_fields(self) -> None:
        tiles = (self.width // TILE_SIZE) * (self.height // TILE_SIZE)
        if self.count > tiles:
            raise ProtocolError(
                f"PackedFrame.count must be at most {tiles} for a "
                f"{self.width}x{self.height} frame, got {self.count}"
            )
        if (self.count == 0) != (self.size == 0):
            raise ProtocolError("PackedFrame.size must be 0 exactly when count is 0")


@dataclass(frozen=True, slots=True)
class Ack(_Message):
    """Client -> server, a Frame seq reconstructed and verified; cumulative (every earlier too)."""

    TYPE: ClassVar[MessageType] = MessageType.ACK
    seq: int = _spec(_SEQ)


@dataclass(frozen=True, slots=True)
class Error(_Message):
    """Either way, the last message before the sender closes the connection."""

    TYPE: ClassVar[MessageType] = MessageType.ERROR
    code: ErrorCode = _spec(_error_code)
    message: str = _spec(_TEXT)


@dataclass(frozen=True, slots=True)
class Bye(_Message):
    """Either way, a clean close."""

    TYPE: ClassVar[MessageType] = MessageType.BYE
    reason: str = _spec(_TEXT, "")


@dataclass(frozen=True, slots=True)
class Resync(_Message):
    """Client -> server, asks for a keyframe after a checksum mismatch."""

    TYPE: ClassVar[MessageType] = MessageType.RESYNC
    reason: str = _spec(_TEXT, "")


Message: TypeAlias = Hello | Welcome | Input | Frame | Ack | Error | Bye | Resync | PackedFrame

MESSAGE_CLASSES: dict[MessageType, type[Message]] = {
    cls.TYPE: cls for cls in (Hello, Welcome, Input, Frame, Ack, Error, Bye, Resync, PackedFrame)
}
