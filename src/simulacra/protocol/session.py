"""Client and server state machines for protocol v1; sans-I/O.

::

    client: IDLE ─send Hello─► HELLO_SENT ─recv Welcome─► STREAMING ─Bye/Error─► CLOSED
    server: AWAIT_HELLO ─recv Hello─► HELLO_RECEIVED ─send Welcome─► STREAMING ─Bye/Error─► CLOSED

    transport message ──receive_data──► decode ─► legal here? ─► transition ─► [message]
    message ──send──► legal here? ─► transition ─► wire bytes ──► transport
    error ──fail──► Error(code, message) wire bytes, state CLOSED

Every legal step is one entry of ``TRANSITIONS``; anything else raises
``InvalidState`` (error 409) and changes nothing. Sending or receiving Bye or
Error closes the connection, except a refusal: an Error with code 403 while
STREAMING (a view-role user's Input) refuses that one request and the stream
goes on. Bytes that arrive once the connection is CLOSED
are dropped: they were in flight when it closed.

On top of the table, a connection keeps the sequence rules of docs/protocol.md:
Input and Frame seq strictly increase, an Ack names a Frame that was sent, and a
Frame's input_seq names an Input that arrived.
"""

from __future__ import annotations

from enum import Enum

from simulacra.errors import (
    Forbidden,
    InvalidState,
    NotFound,
    PayloadTooBig,
    ProtocolError,
    SimulacraError,
    Unauthorized,
    UnsupportedVersion,
)
from simulacra.protocol.messages import (
    MAX_TEXT_CHARS,
    Ack,
    Bye,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Input,
    Message,
    PackedFrame,
    Resync,
    Welcome,
)
from simulacra.protocol.wire import decode_message, encode_message

__all__ = [
    "Role",
    "Direction",
    "State",
    "TRANSITIONS",
    "error_code_for",
    "Connection",
    "ClientConnection",
    "ServerConnection",
]


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


class Direction(Enum):
    SEND = "send"
    RECV = "recv"


class State(Enum):
    IDLE = "IDLE"  # client, before Hello
    HELLO_SENT = "HELLO_SENT"  # client, waiting for Welcome
    AWAIT_HELLO = "AWAIT_HELLO"  # server, before Hello
    HELLO_RECEIVED = "HELLO_RECEIVED"  # server, deciding what to answer
    STREAMING = "STREAMING"
    CLOSED = "CLOSED"


CLIENT, SERVER = Role.CLIENT, Role.SERVER
SEND, RECV = Direction.SEND, Direction.RECV
IDLE, HELLO_SENT, AWAIT_HELLO, HELLO_RECEIVED, STREAMING, CLOSED = State

# Either side may say Bye or Error at any time before CLOSED, and either closes.
_CLOSE = {(SEND, Bye): CLOSED, (SEND, Error): CLOSED, (RECV, Bye): CLOSED, (RECV, Error): CLOSED}

# {role: {state: {(direction, message class): next state}}}
TRANSITIONS: dict[Role, dict[State, dict[tuple[Direction, type[Message]], State]]] = {
    CLIENT: {
        IDLE: {(SEND, Hello): HELLO_SENT, **_CLOSE},
        HELLO_SENT: {(RECV, Welcome): STREAMING, **_CLOSE},
        STREAMING: {
            (SEND, Input): STREAMING,
            (SEND, Ack): STREAMING,
            (SEND, Resync): STREAMING,
            (RECV, Frame): STREAMING,
            (RECV, PackedFrame): STREAMING,
            **_CLOSE,
        },
        CLOSED: {},
    },
    SERVER: {
        AWAIT_HELLO: {(RECV, Hello): HELLO_RECEIVED, **_CLOSE},
        HELLO_RECEIVED: {(SEND, Welcome): STREAMING, **_CLOSE},
        STREAMING: {
            (RECV, Input): STREAMING,
            (RECV, Ack): STREAMING,
            (RECV, Resync): STREAMING,
            (SEND, Frame): STREAMING,
            (SEND, PackedFrame): STREAMING,
            **_CLOSE,
        },
        CLOSED: {},
    },
}

# Most specific first: PayloadTooBig, UnsupportedVersion and InvalidState are ProtocolErrors.
_ERROR_CODES: tuple[tuple[type[BaseException], ErrorCode], ...] = (
    (PayloadTooBig, ErrorCode.PAYLOAD_TOO_BIG),
    (UnsupportedVersion, ErrorCode.UNSUPPORTED_VERSION),
    (InvalidState, ErrorCode.OUT_OF_STATE),
    (ProtocolError, ErrorCode.MALFORMED),
    (Forbidden, ErrorCode.FORBIDDEN),
    (Unauthorized, ErrorCode.FORBIDDEN),  # no 401 in v1: tokens are checked at the handshake
    (NotFound, ErrorCode.NOT_FOUND),
)


def error_code_for(exc: BaseException) -> ErrorCode:
    """The Error code that reports ``exc`` to the peer."""
    for cls, code in _ERROR_CODES:
        if isinstance(exc, cls):
            return code
    return ErrorCode.SERVER_ERROR


class Connection:
    """One protocol connection, seen from one side; feed it bytes, send it messages."""

    def __init__(self, role: Role) -> None:
        self.role = role
        self._table = TRANSITIONS[role]
        self._state = IDLE if role is CLIENT else AWAIT_HELLO
        self.hello: Hello | None = None  # as sent (client) or received (server)
        self.welcome: Welcome | None = None  # as received (client) or sent (server)
        self.last_input_seq = 0  # highest Input seq sent (client) or received (server)
        self.last_frame_seq = 0  # highest Frame seq sent (server) or received (client)

    @property
    def state(self) -> State:
        return self._state

    def receive_data(self, data: bytes) -> list[Message]:
        """Decode one transport message, check it is legal now, and apply it.

        Raises ``ProtocolError`` (or a subclass) and changes nothing when the
        message is malformed or out of state; answer it with ``fail()``.
        """
        if self._state is CLOSED:
            return []
        msg = decode_message(data)
        self._step(RECV, msg)
        return [msg]

    def send(self, msg: Message) -> bytes:
        """Check ``msg`` is legal now, apply it, and return its wire bytes."""
        data = encode_message(msg)  # first, so a message too big to send changes nothing
        self._step(SEND, msg)
        return data

    def fail(self, exc: BaseException) -> bytes:
        """Bytes of the Error that reports ``exc`` to the peer; the connection is CLOSED.

        Raises ``InvalidState`` if the connection is already CLOSED: nothing to answer.
        """
        code = error_code_for(exc)
        if isinstance(exc, SimulacraError):
            text = str(exc) or type(exc).__name__
        else:
            text = "internal server error"  # a bug's details stay in our logs
        text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates cannot travel
        if len(text) > MAX_TEXT_CHARS:
            text = text[: MAX_TEXT_CHARS - 3] + "..."
        data = self.send(Error(code, text))
        self._state = CLOSED  # fail() always ends the connection, a 403 included
        return data

    def _step(self, direction: Direction, msg: Message) -> None:
        verb = "send" if direction is SEND else "receive"
        try:
            next_state = self._table[self._state][(direction, type(msg))]
        except KeyError:
            raise InvalidState(
                f"{self.role.value} cannot {verb} {type(msg).__name__} in state {self._state.value}"
            ) from None
        self._check_sequence(direction, msg)
        if self._state is STREAMING and isinstance(msg, Error) and msg.code == ErrorCode.FORBIDDEN:
            next_state = STREAMING  # a refusal of one request, not the end of the stream
        self._state = next_state

    def _check_sequence(self, direction: Direction, msg: Message) -> None:
        """Sequence rules; raises before any state changes."""
        verb = "sent" if direction is SEND else "received"
        if isinstance(msg, Input):
            if msg.seq <= self.last_input_seq:
                raise ProtocolError(
                    f"Input.seq must increase: {verb} {msg.seq} after {self.last_input_seq}"
                )
            self.last_input_seq = msg.seq
        elif isinstance(msg, Frame | PackedFrame):
            name = type(msg).__name__
            if msg.seq <= self.last_frame_seq:
                raise ProtocolError(
                    f"{name}.seq must increase: {verb} {msg.seq} after {self.last_frame_seq}"
                )
            if msg.input_seq > self.last_input_seq:
                raise ProtocolError(
                    f"{name}.input_seq {msg.input_seq} names an Input never sent "
                    f"(highest is {self.last_input_seq})"
                )
            self.last_frame_seq = msg.seq
        elif isinstance(msg, Ack):
            if msg.seq > self.last_frame_seq:
                raise ProtocolError(
                    f"Ack.seq {msg.seq} names a Frame never sent (highest is {self.last_frame_seq})"
                )
        elif isinstance(msg, Hello):
            self.hello = msg
        elif isinstance(msg, Welcome):
            self.welcome = msg


class ClientConnection(Connection):
    """The client side: sends Hello, Input, Ack, Resync; receives Welcome, Frame."""

    def __init__(self) -> None:
        super().__init__(CLIENT)


class ServerConnection(Connection):
    """The server side: receives Hello, Input, Ack, Resync; sends Welcome, Frame."""

    def __init__(self) -> None:
        super().__init__(SERVER)
