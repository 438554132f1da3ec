"""State machines: two endpoints linked by an in-memory network, no sockets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from simulacra.errors import (
    CodecError,
    Forbidden,
    InvalidState,
    NotFound,
    PayloadTooBig,
    ProtocolError,
    SimulacraError,
    Unauthorized,
    UnsupportedVersion,
)
from simulacra.protocol import (
    TRANSITIONS,
    Ack,
    Bye,
    ClientConnection,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Input,
    Message,
    Resync,
    Role,
    ServerConnection,
    State,
    Welcome,
    decode_message,
    encode_message,
)

HELLO = Hello("simulacra-test/0.1", "2048", "", "tiles")
WELCOME = Welcome("s1", "alice", "control", "2048", 32, 16, 16, 16, ("2048", "sand"))


def frame(seq: int, input_seq: int = 0, *, keyframe: bool = False) -> Frame:
    tiles = ((0, 0, b"\x01\x02\x03"), (1, 0, b"\x04\x05\x06")) if keyframe else ()
    return Frame(seq, input_seq, keyframe, 32, 16, tiles, 0x1234)


class Link:
    """A fake ordered, reliable network: one side's send feeds the other's receive_data."""

    def __init__(self) -> None:
        self.client = ClientConnection()
        self.server = ServerConnection()
        self.wire: list[bytes] = []

    def client_sends(self, msg: Message) -> list[Message]:
        data = self.client.send(msg)
        self.wire.append(data)
        return self.server.receive_data(data)

    def server_sends(self, msg: Message) -> list[Message]:
        data = self.server.send(msg)
        self.wire.append(data)
        return self.client.receive_data(data)

    def streaming(self) -> Link:
        self.client_sends(HELLO)
        self.server_sends(WELCOME)
        return self


def test_whole_exchange() -> None:
    link = Link()
    assert (link.client.state, link.server.state) == (State.IDLE, State.AWAIT_HELLO)

    assert link.client_sends(HELLO) == [HELLO]
    assert (link.client.state, link.server.state) == (State.HELLO_SENT, State.HELLO_RECEIVED)
    assert link.server.hello == HELLO and link.client.hello == HELLO

    assert link.server_sends(WELCOME) == [WELCOME]
    assert (link.client.state, link.server.state) == (State.STREAMING, State.STREAMING)
    assert link.client.welcome == WELCOME and link.server.welcome == WELCOME

    assert link.server_sends(frame(1, keyframe=True)) == [frame(1, keyframe=True)]
    assert link.client_sends(Ack(1)) == [Ack(1)]
    assert link.client_sends(Input(1, "key", "ArrowLeft")) == [Input(1, "key", "ArrowLeft")]
    assert link.client_sends(Input(2, "pointer", "", 5, 7, 1)) == [Input(2, "pointer", "", 5, 7, 1)]
    assert link.server_sends(frame(2, 2)) == [frame(2, 2)]
    assert link.client_sends(Resync("checksum mismatch")) == [Resync("checksum mismatch")]
    assert link.server_sends(frame(3, 2, keyframe=True)) == [frame(3, 2, keyframe=True)]
    assert link.client_sends(Ack(3)) == [Ack(3)]
    assert (link.client.last_input_seq, link.server.last_input_seq) == (2, 2)
    assert (link.client.last_frame_seq, link.server.last_frame_seq) == (3, 3)

    assert link.client_sends(Bye("done")) == [Bye("done")]
    assert (link.client.state, link.server.state) == (State.CLOSED, State.CLOSED)
    assert link.wire[0] == encode_message(HELLO)
    assert link.wire[-1] == b"\x93\x01\x07\xa4done"


def test_server_says_bye() -> None:
    link = Link().streaming()
    assert link.server_sends(Bye("shutting down")) == [Bye("shutting down")]
    assert (link.client.state, link.server.state) == (State.CLOSED, State.CLOSED)


def test_server_refuses_hello_with_error() -> None:
    link = Link()
    link.client_sends(Hello("c", "nope"))
    data = link.server.fail(NotFound("unknown app 'nope'"))
    assert data == b"\x94\x01\x06\xcd\x01\x94\xb2unknown app 'nope'"
    assert link.client.receive_data(data) == [Error(ErrorCode.NOT_FOUND, "unknown app 'nope'")]
    assert (link.client.state, link.server.state) == (State.CLOSED, State.CLOSED)


def test_table_covers_every_state_of_each_role() -> None:
    client_states = {State.IDLE, State.HELLO_SENT, State.STREAMING, State.CLOSED}
    server_states = {State.AWAIT_HELLO, State.HELLO_RECEIVED, State.STREAMING, State.CLOSED}
    assert set(TRANSITIONS[Role.CLIENT]) == client_states
    assert set(TRANSITIONS[Role.SERVER]) == server_states
    assert TRANSITIONS[Role.CLIENT][State.CLOSED] == {}
    assert TRANSITIONS[Role.SERVER][State.CLOSED] == {}
    for role in Role:
        for state, steps in TRANSITIONS[role].items():
            assert set(steps.values()) <= set(TRANSITIONS[role]), (role, state)


def out_of_state_cases() -> list[tuple[str, object]]:
    return [
        ("client sends Input before Hello", lambda net: net.client.send(Input(1, "key", "a"))),
        ("client sends Welcome", lambda net: net.client.send(WELCOME)),
        ("client sends Frame", lambda net: net.streaming().client.send(frame(1))),
        ("client sends Hello twice", lambda net: (net.client_sends(HELLO), net.client.send(HELLO))),
        (
            "client sends Ack before Welcome",
            lambda net: (net.client_sends(HELLO), net.client.send(Ack(1))),
        ),
        ("server sends Frame before Hello", lambda net: net.server.send(frame(1))),
        (
            "server sends Frame before Welcome",
            lambda net: (net.client_sends(HELLO), net.server.send(frame(1))),
        ),
        ("server sends Welcome twice", lambda net: net.streaming().server.send(WELCOME)),
        ("server sends Input", lambda net: net.streaming().server.send(Input(1, "key", "a"))),
        (
            "server receives Input before Hello",
            lambda net: net.server.receive_data(encode_message(Input(1, "key"))),
        ),
        (
            "server receives Hello twice",
            lambda net: net.streaming().server.receive_data(encode_message(HELLO)),
        ),
        (
            "server receives Frame",
            lambda net: net.streaming().server.receive_data(encode_message(frame(1))),
        ),
        (
            "client receives Frame before Hello",
            lambda net: net.client.receive_data(encode_message(frame(1))),
        ),
        (
            "client receives Frame before Welcome",
            lambda net: (
                net.client_sends(HELLO),
                net.client.receive_data(encode_message(frame(1))),
            ),
        ),
        (
            "client receives Welcome twice",
            lambda net: net.streaming().client.receive_data(encode_message(WELCOME)),
        ),
        (
            "client receives Hello",
            lambda net: net.streaming().client.receive_data(encode_message(HELLO)),
        ),
        (
            "client receives Ack",
            lambda net: net.streaming().client.receive_data(encode_message(Ack(1))),
        ),
    ]


@pytest.mark.parametrize(
    ("case", "step"), out_of_state_cases(), ids=[c for c, _ in out_of_state_cases()]
)
def test_out_of_state_raises_and_changes_nothing(case: str, step: object) -> None:
    link = Link()
    with pytest.raises(InvalidState) as info:
        step(link)  # type: ignore[operator]
    # the failing step changed nothing: both ends are where the last legal step left them
    before = Link()
    try:
        step(before)  # type: ignore[operator]
    except InvalidState:
        pass
    assert (link.client.state, link.server.state) == (before.client.state, before.server.state)
    assert State.CLOSED not in (link.client.state, link.server.state)
    assert " cannot " in str(info.value) and " in state " in str(info.value)


def test_out_of_state_message_text() -> None:
    server = ServerConnection()
    with pytest.raises(InvalidState, match="^server cannot receive Input in state AWAIT_HELLO$"):
        server.receive_data(encode_message(Input(1, "key", "a")))
    client = ClientConnection()
    with pytest.raises(InvalidState, match="^client cannot send Ack in state IDLE$"):
        client.send(Ack(1))


def test_invalid_state_answered_with_409() -> None:
    server = ServerConnection()
    try:
        server.receive_data(encode_message(Ack(1)))
    except InvalidState as exc:
        data = server.fail(exc)
    assert decode_message(data) == Error(409, "server cannot receive Ack in state AWAIT_HELLO")
    assert server.state is State.CLOSED


def test_malformed_bytes_change_nothing_and_answer_400() -> None:
    link = Link().streaming()
    with pytest.raises(ProtocolError) as info:
        link.server.receive_data(b"\x93\x01\x05\x00")
    assert link.server.state is State.STREAMING
    assert decode_message(link.server.fail(info.value)) == Error(
        400, "Ack.seq must be in 1..9007199254740991, got 0"
    )
    assert link.server.state is State.CLOSED


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (
            PayloadTooBig("message is 2000000 bytes, limit 1048576"),
            413,
            "message is 2000000 bytes, limit 1048576",
        ),
        (UnsupportedVersion("protocol version 2"), 426, "protocol version 2"),
        (InvalidState("late"), 409, "late"),
        (ProtocolError("bad"), 400, "bad"),
        (Forbidden("view role cannot send Input"), 403, "view role cannot send Input"),
        (Unauthorized("token revoked"), 403, "token revoked"),
        (NotFound("no such session"), 404, "no such session"),
        (CodecError("tile encoder failed"), 500, "tile encoder failed"),
        (SimulacraError(), 500, "SimulacraError"),
        (RuntimeError("secret path /etc/x"), 500, "internal server error"),
        (ProtocolError("x" * 2000), 400, "x" * 1021 + "..."),
        (ProtocolError("bad \ud800 text"), 400, "bad ? text"),
    ],
)
def test_fail_codes(exc: BaseException, code: int, text: str) -> None:
    for conn in (ServerConnection(), Link().streaming().client):
        assert decode_message(conn.fail(exc)) == Error(code, text)
        assert conn.state is State.CLOSED


@pytest.mark.parametrize("closer", [Bye("later"), Error(500, "boom")])
def test_receiving_bye_or_error_closes_in_any_open_state(closer: Message) -> None:
    data = encode_message(closer)
    setups = [
        lambda net: net.server,
        lambda net: (net.client_sends(HELLO), net.server)[1],
        lambda net: net.streaming().server,
        lambda net: net.client,
        lambda net: (net.client_sends(HELLO), net.client)[1],
        lambda net: net.streaming().client,
    ]
    for setup in setups:
        conn = setup(Link())
        assert conn.receive_data(data) == [closer]
        assert conn.state is State.CLOSED


def test_sending_bye_closes_in_any_open_state() -> None:
    for conn in (
        ClientConnection(),
        ServerConnection(),
        Link().streaming().client,
        Link().streaming().server,
    ):
        assert conn.send(Bye()) == b"\x93\x01\x07\xa0"
        assert conn.state is State.CLOSED


def test_nothing_after_close() -> None:
    link = Link().streaming()
    link.client_sends(Bye())
    for conn in (link.client, link.server):
        with pytest.raises(InvalidState, match="in state CLOSED"):
            conn.send(Bye())
        with pytest.raises(InvalidState, match="in state CLOSED"):
            conn.fail(ProtocolError("late"))
    with pytest.raises(InvalidState):
        link.client.send(Input(1, "key", "a"))
    with pytest.raises(InvalidState):
        link.server.send(frame(1))
    # what was in flight when the connection closed is dropped, not an error
    assert link.server.receive_data(encode_message(Input(1, "key", "a"))) == []
    assert link.client.receive_data(encode_message(frame(1))) == []
    assert link.server.receive_data(b"\xc1") == []
    assert (link.client.state, link.server.state) == (State.CLOSED, State.CLOSED)


def test_input_seq_must_increase() -> None:
    link = Link().streaming()
    link.client_sends(Input(5, "key", "a"))
    with pytest.raises(ProtocolError, match="^Input.seq must increase: sent 5 after 5$"):
        link.client.send(Input(5, "key", "a"))
    with pytest.raises(ProtocolError, match="^Input.seq must increase: received 4 after 5$"):
        link.server.receive_data(encode_message(Input(4, "key", "a")))
    assert link.client_sends(Input(9, "key", "a")) == [Input(9, "key", "a")]


def test_frame_seq_must_increase() -> None:
    link = Link().streaming()
    link.server_sends(frame(3, keyframe=True))
    with pytest.raises(ProtocolError, match="^Frame.seq must increase: sent 3 after 3$"):
        link.server.send(frame(3))
    with pytest.raises(ProtocolError, match="^Frame.seq must increase: received 2 after 3$"):
        link.client.receive_data(encode_message(frame(2)))
    assert (link.client.state, link.server.state) == (State.STREAMING, State.STREAMING)


def test_frame_input_seq_names_a_real_input() -> None:
    link = Link().streaming()
    link.client_sends(Input(1, "key", "a"))
    with pytest.raises(ProtocolError, match="Frame.input_seq 2 names an Input never sent"):
        link.server.send(frame(1, 2))
    with pytest.raises(ProtocolError, match="Frame.input_seq 2 names an Input never sent"):
        link.client.receive_data(encode_message(frame(1, 2)))
    assert link.server_sends(frame(1, 1)) == [frame(1, 1)]


def test_ack_names_a_sent_frame() -> None:
    link = Link().streaming()
    with pytest.raises(ProtocolError, match="Ack.seq 1 names a Frame never sent"):
        link.client.send(Ack(1))
    with pytest.raises(ProtocolError, match="Ack.seq 1 names a Frame never sent"):
        link.server.receive_data(encode_message(Ack(1)))
    link.server_sends(frame(1, keyframe=True))
    link.server_sends(frame(2))
    assert link.client_sends(Ack(2)) == [Ack(2)]
    assert link.client_sends(Ack(1)) == [Ack(1)]  # a stale ack is harmless


def test_send_refusals_change_nothing() -> None:
    link = Link().streaming()
    too_big = Frame(1, 0, True, 320, 256, tuple((i, 1, bytes(4096)) for i in range(300)), 0)
    with pytest.raises(PayloadTooBig):
        link.server.send(too_big)
    with pytest.raises(ProtocolError, match="not a protocol message: str"):
        link.server.send("Frame")  # type: ignore[arg-type]
    assert (link.server.state, link.server.last_frame_seq) == (State.STREAMING, 0)
    assert link.server_sends(frame(1, keyframe=True)) == [frame(1, keyframe=True)]


def test_import_pulls_in_no_io_or_torch() -> None:
    code = (
        "import sys, simulacra.protocol, simulacra.protocol.ice\n"
        "heavy = [m for m in ('asyncio', 'aiortc', 'torch', 'websockets', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_forbidden_error_while_streaming_refuses_one_request_and_keeps_streaming() -> None:
    from simulacra.protocol.messages import Error, ErrorCode, Hello, Input, Welcome
    from simulacra.protocol.session import ClientConnection, ServerConnection, State

    client, server = ClientConnection(), ServerConnection()
    server.receive_data(client.send(Hello(client="t", app="", session="", mode="tiles")))
    welcome = Welcome(
        session="s",
        user="u",
        role="view",
        app="2048",
        width=16,
        height=16,
        tile_size=16,
        dictionary_slots=0,
        apps=("2048",),
    )
    client.receive_data(server.send(welcome))
    server.receive_data(client.send(Input(seq=1, kind="key", key="ArrowLeft")))
    client.receive_data(server.send(Error(ErrorCode.FORBIDDEN, "view role cannot send input")))
    assert client.state is State.STREAMING and server.state is State.STREAMING
    client.receive_data(server.send(Error(ErrorCode.MALFORMED, "bad")))
    assert client.state is State.CLOSED and server.state is State.CLOSED
