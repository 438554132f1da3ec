"""WebRTC end to end: an aiortc client peer in the same process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from server_testkit import DEADLINE_S, recv_ice, running_server, wait_until, ws_url
from websockets.asyncio.client import ClientConnection as WsClientConnection
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from simulacra.codecs.display import FrameDecoder
from simulacra.protocol.messages import Ack, Frame, Hello, Input, Welcome
from simulacra.protocol.session import ClientConnection
from simulacra.server import Server


@dataclass
class RtcClient:
    pc: RTCPeerConnection
    channel: RTCDataChannel
    ws: WsClientConnection
    inbox: asyncio.Queue[bytes | str]
    conn: ClientConnection

    def send(self, msg: object) -> None:
        self.channel.send(self.conn.send(msg))  # type: ignore[arg-type]

    async def recv(self) -> object:
        async with asyncio.timeout(DEADLINE_S):
            data = await self.inbox.get()
        assert isinstance(data, bytes)
        (msg,) = self.conn.receive_data(data)
        return msg


@asynccontextmanager
async def rtc_client(srv: Server, token: str) -> AsyncIterator[RtcClient]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("sim")
    opened = asyncio.Event()
    inbox: asyncio.Queue[bytes | str] = asyncio.Queue()
    channel.on("open", opened.set)
    channel.on("message", inbox.put_nowait)
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with connect(ws_url(srv, token, "webrtc")) as ws:
            assert await recv_ice(ws) == []
            await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
            async with asyncio.timeout(DEADLINE_S):
                answer = json.loads(await ws.recv())
            assert answer["type"] == "answer"
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
            async with asyncio.timeout(DEADLINE_S):
                await opened.wait()
            yield RtcClient(pc, channel, ws, inbox, ClientConnection())
    finally:
        await pc.close()


async def test_webrtc_stream_and_vanish(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        async with rtc_client(srv, srv.admin_token) as client:
            client.send(Hello(client="test-rtc/0", app="", session="", mode="tiles"))
            welcome = await client.recv()
            assert isinstance(welcome, Welcome)
            decoder = FrameDecoder(
                welcome.width, welcome.height, dictionary_slots=welcome.dictionary_slots
            )
            key = await client.recv()
            assert isinstance(key, Frame) and key.keyframe
            decoder.apply(key.tiles, keyframe=True)
            assert decoder.checksum() == key.checksum
            assert (srv.peer_count, srv.connection_count) == (1, 1)
            client.send(Ack(seq=key.seq))
            client.send(Input(seq=1, kind="key", key="ArrowRight"))
            answer = await client.recv()
            assert isinstance(answer, Frame) and answer.input_seq == 1
            decoder.apply(answer.tiles, keyframe=answer.keyframe)
            assert decoder.checksum() == answer.checksum
            # Vanish mid-stream: no Bye, the peer connection just goes away.
            client.send(Input(seq=2, kind="key", key="ArrowUp"))
            await client.pc.close()
            await wait_until(lambda: srv.peer_count == 0, "the peer to be cleaned up")
            await wait_until(lambda: srv.connection_count == 0, "the link to be cleaned up")
            # The server closes the signaling socket of a dead peer too.
            async with asyncio.timeout(DEADLINE_S):
                try:
                    while True:
                        await client.ws.recv()
                except ConnectionClosed:
                    pass


async def test_signaling_socket_drop_closes_peer(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        async with rtc_client(srv, srv.admin_token) as client:
            client.send(Hello(client="test-rtc/0", app="", session="", mode="tiles"))
            assert isinstance(await client.recv(), Welcome)
            assert srv.peer_count == 1
            assert client.ws.transport is not None
            client.ws.transport.abort()  # the TCP connection dies, no close frame
            await wait_until(lambda: srv.peer_count == 0, "the peer to be cleaned up")
            await wait_until(lambda: srv.connection_count == 0, "the link to be cleaned up")


async def test_no_offer_times_out(tmp_path: Path) -> None:
    async with running_server(tmp_path, hello_timeout=0.2) as srv:
        async with connect(ws_url(srv, srv.admin_token, "webrtc")) as ws:
            async with asyncio.timeout(DEADLINE_S):
                try:
                    while True:
                        await ws.recv()
                except ConnectionClosed:
                    pass
            assert ws.close_code == 4408
        await wait_until(lambda: srv.peer_count == 0, "the idle peer to go")


async def test_bad_signaling_message(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        async with connect(ws_url(srv, srv.admin_token, "webrtc")) as ws:
            await recv_ice(ws)
            await ws.send("not json")
            async with asyncio.timeout(DEADLINE_S):
                reply = json.loads(await ws.recv())
            assert reply["type"] == "error" and reply["code"] == 400
            async with asyncio.timeout(DEADLINE_S):
                try:
                    while True:
                        await ws.recv()
                except ConnectionClosed:
                    pass
            assert (ws.close_code, ws.close_reason) == (4400, "4400 malformed message")
        await wait_until(lambda: srv.peer_count == 0, "the peer to go")
