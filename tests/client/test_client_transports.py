"""Carriers against small in-test servers on 127.0.0.1 (real websockets, real aiortc)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from simulacra.client.transports import (
    Recorder,
    VideoStats,
    WebRtcTransport,
    WsTransport,
    open_transport,
    signal_url,
    token_from_url,
)
from simulacra.errors import (
    ConfigError,
    NotFound,
    PayloadTooBig,
    ProtocolError,
    TransportError,
    Unauthorized,
)
from simulacra.protocol.ice import IceServer

# -- URLs -------------------------------------------------------------------------------


def test_signal_url_from_http() -> None:
    assert (
        signal_url("http://127.0.0.1:8080", "T0k", "webrtc")
        == "ws://127.0.0.1:8080/signal?token=T0k&transport=webrtc"
    )


def test_signal_url_https_and_token_in_url() -> None:
    assert (
        signal_url("https://example.org/?token=abc", "", "ws")
        == "wss://example.org/signal?token=abc&transport=ws"
    )


def test_signal_url_explicit_token_wins() -> None:
    assert (
        signal_url("http://h:1/?token=old", "new", "ws") == "ws://h:1/signal?token=new&transport=ws"
    )


def test_signal_url_quotes_token() -> None:
    assert signal_url("http://h:1", "a b&c", "ws") == "ws://h:1/signal?token=a+b%26c&transport=ws"


def test_token_from_url() -> None:
    assert token_from_url("http://h:1/?token=xyz&a=1") == "xyz"
    assert token_from_url("http://h:1/") == ""


@pytest.mark.parametrize("url", ["ftp://h:1", "127.0.0.1:8080", "http://"])
def test_signal_url_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        signal_url(url, "t", "ws")


def test_signal_url_rejects_bad_transport() -> None:
    with pytest.raises(ConfigError, match="transport"):
        signal_url("http://h:1", "t", "carrier-pigeon")


def test_signal_url_needs_a_token() -> None:
    with pytest.raises(Unauthorized, match="no token"):
        signal_url("http://h:1", "", "ws")


# -- a small signaling server ------------------------------------------------------------

TOKEN = "good"


def _check_token(connection: ServerConnection, request: Request) -> Response | None:
    if f"token={TOKEN}" not in request.path:
        return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid token\n")
    if not request.path.startswith("/signal?"):
        return connection.respond(HTTPStatus.NOT_FOUND, "no such path\n")
    return None


async def _start(handler: Callable[[ServerConnection], Any]) -> tuple[Server, str]:
    server = await serve(handler, "127.0.0.1", 0, process_request=_check_token)
    port = server.sockets[0].getsockname()[1]  # type: ignore[index]
    return server, f"http://127.0.0.1:{port}"


async def _echo_ws(ws: ServerConnection) -> None:
    async for message in ws:
        if message == b"error":
            await ws.send(json.dumps({"type": "error", "code": 404, "message": "no such app"}))
        elif message == b"kick":
            await ws.close(4401, "invalid token")
        elif message == b"big":
            await ws.send(b"x" * ((1 << 20) + 1))
        else:
            await ws.send(message)


@pytest.fixture
async def ws_server() -> AsyncIterator[str]:
    server, url = await _start(_echo_ws)
    yield url
    server.close()
    await server.wait_closed()


async def test_ws_round_trip(ws_server: str) -> None:
    transport = await open_transport(ws_server, TOKEN, "ws", timeout=5)
    assert isinstance(transport, WsTransport)
    await transport.send(b"\x93\x01\x07\xa4done")
    assert await transport.recv() == b"\x93\x01\x07\xa4done"
    await transport.close()
    await transport.close()  # twice is fine


async def test_ws_signal_error_frame(ws_server: str) -> None:
    transport = await open_transport(ws_server, TOKEN, "ws", timeout=5)
    await transport.send(b"error")
    with pytest.raises(NotFound, match="server error 404: no such app"):
        await transport.recv()
    await transport.close()


async def test_ws_close_reason_becomes_error(ws_server: str) -> None:
    transport = await open_transport(ws_server, TOKEN, "ws", timeout=5)
    await transport.send(b"kick")
    with pytest.raises(Unauthorized, match="4401 invalid token"):
        await transport.recv()
    assert await transport.wait_closed(5)
    await transport.close()


async def test_ws_message_over_limit(ws_server: str) -> None:
    transport = await open_transport(ws_server, TOKEN, "ws", timeout=5)
    await transport.send(b"big")
    with pytest.raises(PayloadTooBig):
        await transport.recv()
    await transport.close()


async def test_handshake_401_is_one_line(ws_server: str) -> None:
    with pytest.raises(Unauthorized) as info:
        await open_transport(ws_server, "wrong", "ws", timeout=5)
    assert str(info.value) == "server refused the connection: 401 invalid token"


async def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port once the socket is closed.
    with pytest.raises(TransportError, match=f"cannot connect to 127.0.0.1:{port}"):
        await open_transport(f"http://127.0.0.1:{port}", TOKEN, "ws", timeout=5)


# -- WebRTC: a real aiortc answerer ------------------------------------------------------


NO_ICE = json.dumps({"type": "ice", "iceServers": []})


class Answerer:
    """Answers one offer and echoes every data-channel message."""

    def __init__(self, *, answer: bool = True, first: str | bytes | None = NO_ICE) -> None:
        self.answer = answer
        self.first = first  # the server's first signaling frame; None: send nothing
        self.pcs: list[RTCPeerConnection] = []
        self.channel_closed = asyncio.Event()

    async def __call__(self, ws: ServerConnection) -> None:
        if self.first is None:
            await ws.wait_closed()
            return
        await ws.send(self.first)
        offer = json.loads(await ws.recv())
        assert offer["type"] == "offer"
        if not self.answer:
            await ws.wait_closed()
            return
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            assert channel.label == "sim"
            channel.on("message", channel.send)
            channel.on("close", self.channel_closed.set)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await ws.send(json.dumps({"type": "answer", "sdp": pc.localDescription.sdp}))
        await ws.wait_closed()

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()


async def test_webrtc_round_trip() -> None:
    answerer = Answerer()
    server, url = await _start(answerer)
    try:
        transport = await open_transport(url, TOKEN, "webrtc", timeout=10)
        assert isinstance(transport, WebRtcTransport)
        payload = bytes(range(256)) * 300  # several SCTP chunks
        await transport.send(payload)
        assert await transport.recv() == payload
        await transport.close()
        await asyncio.wait_for(answerer.channel_closed.wait(), 10)
        with pytest.raises(TransportError):
            await transport.recv()
    finally:
        await answerer.close()
        server.close()
        await server.wait_closed()
    await no_other_tasks()


async def no_other_tasks(deadline_s: float = 10.0) -> None:
    """Poll until only the test's own task runs: nothing leaked by either side."""
    deadline = time.monotonic() + deadline_s
    while (
        others := asyncio.all_tasks() - {asyncio.current_task()}
    ) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not others, others


async def test_webrtc_remote_close_ends_recv() -> None:
    answerer = Answerer()
    server, url = await _start(answerer)
    try:
        transport = await open_transport(url, TOKEN, "webrtc", timeout=10)
        await answerer.close()
        assert await transport.wait_closed(10)
        with pytest.raises(TransportError):
            await transport.recv()
        with pytest.raises(TransportError):
            await transport.send(b"late")
        await transport.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_webrtc_no_answer_times_out() -> None:
    server, url = await _start(Answerer(answer=False))
    try:
        with pytest.raises(TransportError, match="no SDP answer within 0.3 s"):
            await open_transport(url, TOKEN, "webrtc", timeout=0.3)
    finally:
        server.close()
        await server.wait_closed()


async def test_webrtc_takes_the_servers_ice_list(stun_server: Any) -> None:
    # Nothing listens on TCP port 9 of loopback: the TURN attempt is refused at once.
    servers = [
        {"urls": stun_server.url},
        {"urls": ["turn:127.0.0.1:9?transport=tcp"], "username": "1:u", "credential": "c"},
    ]
    answerer = Answerer(first=json.dumps({"type": "ice", "iceServers": servers}))
    server, url = await _start(answerer)
    try:
        sink = io.BytesIO()
        transport = await open_transport(url, TOKEN, "webrtc", timeout=10, record=Recorder(sink))
        assert isinstance(transport, WebRtcTransport)
        assert transport.ice_servers == (
            IceServer((stun_server.url,)),
            IceServer(("turn:127.0.0.1:9?transport=tcp",), "1:u", "c"),
        )
        recorded = sink.getvalue()
        assert recorded.startswith(b'{"type": "ice"')  # recorded like any signaling...
        assert b'"credential": "<redacted>"' in recorded  # ...but no live TURN credential
        assert b'"credential": "c"' not in recorded and b'"username": "1:u"' in recorded
        assert stun_server.requests >= 1  # our peer connection asked the server's STUN
        await transport.close()
    finally:
        await answerer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("first", "error"),
    [
        (b"\x00", "binary frame before its ICE server list"),
        ("[]", "must be a JSON object"),
        ('{"type": "answer", "sdp": ""}', "first signaling frame must be its ICE server list"),
        ('{"type": "ice"}', "iceServers must be a list"),
        ('{"type": "ice", "iceServers": {}}', "iceServers must be a list"),
        ('{"type": "ice", "iceServers": [[]]}', "must be an object"),
        (json.dumps({"type": "ice", "iceServers": [{"urls": "stun:h"}] * 17}), "more than 16"),
        (json.dumps({"type": "ice", "iceServers": [{"urls": ["stun:h"] * 17}]}), "more than 16"),
        ('{"type": "ice", "iceServers": [{"urls": 3}]}', "string or a list of strings"),
        ('{"type": "ice", "iceServers": [{"urls": []}]}', "needs 1..16 URLs"),
        ('{"type": "ice", "iceServers": [{"urls": "http://h"}]}', "must start with stun:"),
        ('{"type": "ice", "iceServers": [{"urls": "stun:h h"}]}', "whitespace"),
        ('{"type": "ice", "iceServers": [{"urls": "stun:h?transport=udp"}]}', "take a transport"),
        ('{"type": "ice", "iceServers": [{"urls": "turn:h", "username": "u"}]}', "or neither"),
        (
            json.dumps(
                {"type": "ice", "iceServers": [{"urls": "turn:h", "username": 1, "credential": ""}]}
            ),
            "username must be a string",
        ),
        (
            json.dumps(
                {
                    "type": "ice",
                    "iceServers": [{"urls": "turn:h", "username": "u", "credential": "c" * 513}],
                }
            ),
            "credential must be a string of at most 512",
        ),
        (
            '{"type": "ice", "iceServers": [{"urls": "stun:h", "x": 1}]}',
            "unexpected iceServers key",
        ),
    ],
)
async def test_webrtc_refuses_a_bad_ice_message(first: str | bytes, error: str) -> None:
    server, url = await _start(Answerer(first=first))
    try:
        with pytest.raises(ProtocolError, match=re.escape(error)):
            await open_transport(url, TOKEN, "webrtc", timeout=5)
    finally:
        server.close()
        await server.wait_closed()


async def test_webrtc_error_before_the_ice_list() -> None:
    first = json.dumps({"type": "error", "code": 404, "message": "no such app"})
    server, url = await _start(Answerer(first=first))
    try:
        with pytest.raises(NotFound, match="server error 404: no such app"):
            await open_transport(url, TOKEN, "webrtc", timeout=5)
    finally:
        server.close()
        await server.wait_closed()


async def test_webrtc_no_ice_list_times_out() -> None:
    server, url = await _start(Answerer(first=None))
    try:
        with pytest.raises(TransportError, match="no ICE server list within 0.3 s"):
            await open_transport(url, TOKEN, "webrtc", timeout=0.3)
    finally:
        server.close()
        await server.wait_closed()


# -- recording and video figures ---------------------------------------------------------


def test_recorder_appends_every_message_up_to_its_limit() -> None:
    sink = io.BytesIO()
    recorder = Recorder(sink, limit=10)
    assert recorder.write(b"\x93\x01") == 2
    assert recorder.write('{"type":"answer"}'[:5]) == 5  # signaling text, as UTF-8
    assert sink.getvalue() == b'\x93\x01{"typ'
    with pytest.raises(PayloadTooBig, match="10-byte limit"):
        recorder.write(b"four")
    assert recorder.bytes == 7 and sink.getvalue() == b'\x93\x01{"typ'


def test_video_stats_count_frames() -> None:
    stats = VideoStats()
    stats.frame(480, 560, 1.0)
    stats.frame(480, 560, 1.5)
    assert (stats.frames, stats.width, stats.height) == (2, 480, 560)
    assert (stats.first_at, stats.last_at) == (1.0, 1.5)


async def test_video_needs_webrtc() -> None:
    with pytest.raises(ConfigError, match="webrtc"):
        await open_transport("http://127.0.0.1:9", "t", "ws", video=True)
