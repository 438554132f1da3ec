"""simulacra.protocol: protocol v1, sans-I/O (bytes in, messages out; no asyncio).

::

    messages.py   one frozen dataclass per message, MessageType, ErrorCode
    wire.py       msgpack encoding, version, size limits, stream framing
    session.py    client and server state machines (TRANSITIONS)
    jsontext.py   JSON objects of the WebSocket side channels (files API, signaling)

See docs/protocol.md for the wire format and the state machine.
"""

from simulacra.protocol.messages import (
    Ack,
    Bye,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Input,
    Message,
    MessageType,
    PackedFrame,
    Resync,
    Welcome,
)
from simulacra.protocol.session import (
    TRANSITIONS,
    ClientConnection,
    Connection,
    Role,
    ServerConnection,
    State,
    error_code_for,
)
from simulacra.protocol.wire import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    MessageReader,
    decode_message,
    encode_message,
    frame_message,
)

__all__ = [
    "MessageType",
    "ErrorCode",
    "Message",
    "Hello",
    "Welcome",
    "Input",
    "Frame",
    "PackedFrame",
    "Ack",
    "Error",
    "Bye",
    "Resync",
    "PROTOCOL_VERSION",
    "MAX_MESSAGE_BYTES",
    "encode_message",
    "decode_message",
    "frame_message",
    "MessageReader",
    "State",
    "Role",
    "TRANSITIONS",
    "Connection",
    "ClientConnection",
    "ServerConnection",
    "error_code_for",
]
