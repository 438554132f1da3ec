"""Protocol v1 wire format: msgpack arrays, a version, size limits.

::

    message ──encode_message──► msgpack [1, type, f1, f2, ...]   (<= MAX_MESSAGE_BYTES)
    bytes ──decode_message──► size check ─► unpack (tight limits) ─► version ─► type ─►
                              arity ─► MessageClass(*fields) (field checks) ─► message

    stream carriers:  frame_message(msg) = u32 big-endian length ‖ message bytes
    chunks ──MessageReader.feed──► buffer (bounded) ──messages()──► message, message, ...

This is the only module that imports msgpack. Whatever bytes arrive,
``decode_message`` returns a message or raises a ``ProtocolError`` subclass:
``PayloadTooBig`` past the size limit, ``UnsupportedVersion`` for a version
other than 1, plain ``ProtocolError`` for everything else.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import fields

import msgpack

from simulacra.errors import PayloadTooBig, ProtocolError, UnsupportedVersion
from simulacra.protocol.messages import (
    MAX_TEXT_CHARS,
    MAX_TILES,
    MESSAGE_CLASSES,
    Message,
    MessageType,
)

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_MESSAGE_BYTES",
    "encode_message",
    "decode_message",
    "frame_message",
    "MessageReader",
]

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20

_LENGTH = struct.Struct(">I")
_FIELD_NAMES = {cls: tuple(f.name for f in fields(cls)) for cls in MESSAGE_CLASSES.values()}
_CLASSES = tuple(MESSAGE_CLASSES.values())

# No valid message needs more than these, so a small hostile message cannot make
# the unpacker allocate big: the longest str is MAX_TEXT_CHARS characters of up to
# 4 UTF-8 bytes, the longest array is Frame.tiles, the longest bin PackedFrame.data
# (bounded by the message itself), and maps and ext never appear.
_UNPACK_LIMITS = {
    "max_str_len": 4 * MAX_TEXT_CHARS,
    "max_bin_len": MAX_MESSAGE_BYTES,
    "max_array_len": MAX_TILES,
    "max_map_len": 0,
    "max_ext_len": 0,
}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def encode_message(msg: Message) -> bytes:
    """``msg`` as wire bytes; ``PayloadTooBig`` if they would pass the limit."""
    if not isinstance(msg, _CLASSES):
        raise ProtocolError(f"not a protocol message: {type(msg).__name__}")
    values = [getattr(msg, name) for name in _FIELD_NAMES[type(msg)]]
    data: bytes = msgpack.packb([PROTOCOL_VERSION, int(msg.TYPE), *values], use_bin_type=True)
    if len(data) > MAX_MESSAGE_BYTES:
        raise PayloadTooBig(
            f"{type(msg).__name__} message is {len(data)} bytes, limit {MAX_MESSAGE_BYTES}"
        )
    return data


def decode_message(data: bytes) -> Message:
    """The message in ``data`` (one whole message, nothing else)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"a message must be bytes, got {type(data).__name__}")
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > MAX_MESSAGE_BYTES:
        raise PayloadTooBig(f"message is {size} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        obj = msgpack.unpackb(data, raw=False, use_list=True, **_UNPACK_LIMITS)
    except Exception as exc:
        # msgpack documents that "other exceptions can be raised during unpacking"
        # beyond its own classes; none of them may escape this boundary.
        raise ProtocolError(f"malformed message: {type(exc).__name__}: {str(exc)[:120]}") from exc
    if not isinstance(obj, list) or not obj:
        raise ProtocolError("a message must be an array [version, type, *fields]")
    version = obj[0]
    if not _is_int(version):
        raise ProtocolError(f"version must be an int, got {type(version).__name__}")
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"protocol version {version} is not supported, this side speaks {PROTOCOL_VERSION}"
        )
    if len(obj) < 2:
        raise ProtocolError("a message must be an array [version, type, *fields]")
    type_id, values = obj[1], obj[2:]
    if not _is_int(type_id) or type_id not in MESSAGE_CLASSES:
        raise ProtocolError(f"unknown message type {type_id!r}"[:160])
    cls = MESSAGE_CLASSES[MessageType(type_id)]
    names = _FIELD_NAMES[cls]
    if len(values) != len(names):
        raise ProtocolError(f"{cls.__name__} needs {len(names)} fields, got {len(values)}")
    return cls(*values)


def frame_message(msg: Message) -> bytes:
    """``msg`` with its 4-byte big-endian length in front, for stream carriers."""
    data = encode_message(msg)
    return _LENGTH.pack(len(data)) + data


class MessageReader:
    """Splits a byte stream of length-prefixed messages; sans-I/O.

    ``feed()`` takes bytes in any split; ``messages()`` yields every complete
    message buffered so far. A declared length past ``max_message_bytes`` or a
    buffer past ``max_buffer_bytes`` raises ``PayloadTooBig``; after any error
    the stream has lost its framing and the connection should close.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_buffer_bytes: int | None = None,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        # room for one whole message plus a next one's start; the owner drains
        # with messages() after every feed, so this bound is never hit honestly
        self.max_buffer_bytes = (
            2 * (_LENGTH.size + max_message_bytes) if max_buffer_bytes is None else max_buffer_bytes
        )
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as messages."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        if len(self._buffer) + len(data) > self.max_buffer_bytes:
            raise PayloadTooBig(
                f"stream buffer would hold {len(self._buffer) + len(data)} bytes, "
                f"limit {self.max_buffer_bytes}"
            )
        self._buffer += data
        self._declared_length()

    def messages(self) -> Iterator[Message]:
        while (length := self._declared_length()) is not None:
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                return
            data = bytes(self._buffer[_LENGTH.size : end])
            del self._buffer[:end]
            yield decode_message(data)

    def _declared_length(self) -> int | None:
        """Length of the next message once its prefix is in; checked against the limit."""
        if len(self._buffer) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(self._buffer)
        if length > self.max_message_bytes:
            raise PayloadTooBig(
                f"declared message length {length} bytes, limit {self.max_message_bytes}"
            )
        return int(length)
