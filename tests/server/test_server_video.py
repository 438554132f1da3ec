"""Video mode: the session's framebuffer as a VP8 track; the data channel keeps the protocol."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from server_testkit import DEADLINE_S, ProtoClient, recv_ice, running_server, wait_until, ws_url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from simulacra.protocol.messages import Ack, Error, ErrorCode, Frame, Hello, Input, Welcome
from simulacra.protocol.session import ClientConnection
from simulacra.server.peers import offers_video


def test_offers_video() -> None:
    assert offers_video("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\na=recvonly\r\n")
    assert not offers_video("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n")


async def test_video_mode_streams_vp8_frames_of_the_app_size(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            pc.addTransceiver("video", direction="recvonly")
            channel = pc.createDataChannel("sim")
            opened = asyncio.Event()
            inbox: asyncio.Queue[bytes] = asyncio.Queue()
            tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
            channel.on("open", opened.set)
            channel.on("message", inbox.put_nowait)
            pc.on("track", tracks.put_nowait)
            await pc.setLocalDescription(await pc.createOffer())
            conn = ClientConnection()
            async with connect(ws_url(srv, srv.admin_token, "webrtc")) as ws:
                assert await recv_ice(ws) == []
                await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
                async with asyncio.timeout(DEADLINE_S):
                    answer = json.loads(await ws.recv())
                assert "VP8/90000" in answer["sdp"] and "H264" not in answer["sdp"]
                await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
                async with asyncio.timeout(DEADLINE_S):
                    await opened.wait()
                    track = await tracks.get()
                assert track.kind == "video"
                channel.send(conn.send(Hello("test-video/0", "", "", "video")))
                async with asyncio.timeout(DEADLINE_S):
                    (welcome,) = conn.receive_data(await inbox.get())
                assert isinstance(welcome, Welcome)
                sizes = []
                async with asyncio.timeout(DEADLINE_S):
                    for _ in range(5):
                        frame = await track.recv()
                        sizes.append((frame.width, frame.height))
                assert sizes == [(welcome.width, welcome.height)] * 5
                # Lossy, but the picture: the last frame is close to the framebuffer.
                (session,) = srv.sessions.sessions.values()  # type: ignore[union-attr]
                assert session.framebuffer is not None
                got = frame.to_ndarray(format="rgb24").astype(int)
                # Measured 6-8 on 2048's first frames; a wrong picture is far off.
                assert abs(got - session.framebuffer.astype(int)).mean() < 24
                # Inputs still go by data channel; their answers carry no tiles.
                channel.send(conn.send(Input(seq=1, kind="key", key="ArrowLeft")))
                async with asyncio.timeout(DEADLINE_S):
                    (answer_frame,) = conn.receive_data(await inbox.get())
                assert isinstance(answer_frame, Frame)
                assert (answer_frame.seq, answer_frame.input_seq) == (1, 1)
                assert (answer_frame.keyframe, answer_frame.tiles) == (False, ())
                channel.send(conn.send(Ack(seq=1)))
                status = srv.status({})
                (viewer,) = status["sessions"][0]["viewer_memory"]
                assert viewer["mode"] == "video"
        finally:
            await pc.close()
        await wait_until(lambda: srv.peer_count == 0, "the peer to go")


async def test_video_mode_needs_webrtc_with_a_video_line(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv, ProtoClient.open(srv, srv.admin_token) as c:
        await c.send(Hello("test/0", "", "", "video"))
        err = await c.recv_unchecked()
        assert err == Error(
            code=ErrorCode.MALFORMED,
            message="video mode needs transport=webrtc and an offer with a video m-line",
        )
        with pytest.raises(ConnectionClosed):
            while True:
                await c.ws.recv()
