"""WebRTC peers (aiortc): one RTCPeerConnection per signaling socket in webrtc mode.

::

    signaling  {"type":"ice","iceServers"} sent first; this peer uses its STUN servers
               (those the last probe reached: ice.IceHealth)
               {"type":"offer","sdp"} ─► PeerSession.answer ─► setRemote, createAnswer,
                                                              setLocal (all candidates gathered)
               ◄── {"type":"answer","sdp"}
    offer has a video m-line ─► SessionVideoTrack on a sendonly VP8 transceiver (before answering)
    client's data channel "sim" opens ─► Link(DataChannelTransport) ─► protocol runs on it
    Hello(mode="video") ─► track.attach(session) ─► recv(): session.framebuffer ─► VP8 (aiortc)
                           paced at the app's tick rate (VIDEO_FPS for apps without ticks)
    channel close | ICE/DTLS failed | signaling socket closed | link closed
        ─► PeerSession.close: link left, channel closed (queued bytes first), pc.close(),
           signaling socket closed, peer unregistered

Every way out goes through ``close``, so ``Server.peer_count`` returns to 0.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from simulacra.errors import ProtocolError
from simulacra.server.connection import Link, LinkContext
from simulacra.server.ice import rtc_ice_servers
from simulacra.server.sessions import AppSession
from simulacra.server.store import User

__all__ = [
    "DATA_CHANNEL_LABEL",
    "MAX_SDP_CHARS",
    "VIDEO_CLOCK_RATE",
    "VIDEO_FPS",
    "DataChannelTransport",
    "PeerSession",
    "SessionVideoTrack",
    "offers_video",
]

log = logging.getLogger("simulacra.server.peers")

DATA_CHANNEL_LABEL = "sim"
MAX_SDP_CHARS = 64 * 1024
_PC_CLOSE_S = 5.0  # how long RTCPeerConnection.close may take before we stop waiting
_DRAIN_S = 1.0  # how long a closing channel may take to deliver its last bytes (an Error)
VIDEO_CLOCK_RATE = 90_000  # RTP clock of video payloads
VIDEO_FPS = 30.0  # frame rate of the video track for apps that only change on input


def offers_video(sdp: str) -> bool:
    """Whether an SDP offer has a video m-line."""
    return any(line.startswith("m=video ") for line in sdp.splitlines())


class SessionVideoTrack(MediaStreamTrack):
    """A session's framebuffer as video: aiortc calls ``recv`` and encodes VP8 off the loop.

    Until a Hello in video mode attaches a session, ``recv`` waits. Frames are
    paced on the RTP clock at the app's tick rate, so pts advance steadily.
    """

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.session: AppSession | None = None
        self.frames_sent = 0
        self._attached = asyncio.Event()
        self._start = 0.0
        self._pts = -1

    def attach(self, session: AppSession) -> None:
        self.session = session
        self._attached.set()

    def stop(self) -> None:
        super().stop()
        self._attached.set()  # wake a recv still waiting for a session

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._attached.wait()
        session = self.session
        if self.readyState != "live" or session is None:
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        rate = session.tick_hz if session.tick_hz > 0 else VIDEO_FPS
        if self._pts < 0:
            self._start, self._pts = loop.time(), 0
        else:
            self._pts += max(1, round(VIDEO_CLOCK_RATE / rate))
            # Pacing, not waiting for state: the encoder pulls frames as fast as we give them.
            delay = self._start + self._pts / VIDEO_CLOCK_RATE - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        fb = session.framebuffer
        if fb is None:
            fb = np.zeros((session.height, session.width, 3), dtype=np.uint8)
        frame = VideoFrame.from_ndarray(fb, format="rgb24")
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        self.frames_sent += 1
        return frame


class DataChannelTransport:
    """``Transport`` over an RTCDataChannel: one message per protocol message."""

    def __init__(self, channel: RTCDataChannel, peer: PeerSession) -> None:
        self.channel = channel
        self.peer = peer

    def write(self, data: bytes) -> None:
        if self.channel.readyState != "open":
            return
        try:
            self.channel.send(data)
        except ValueError as exc:
            # The remote's max-message-size is smaller than this message.
            log.warning("data channel refused %d bytes: %s", len(data), exc)
            self.peer.close(4413, "413 message exceeds the data channel's max-message-size")

    def buffered(self) -> int:
        return int(self.channel.bufferedAmount)

    def supports_video(self) -> bool:
        return self.peer.video_track is not None

    def attach_video(self, session: AppSession) -> None:
        assert self.peer.video_track is not None
        self.peer.video_track.attach(session)

    def close(self, code: int, reason: str) -> None:
        self.peer.close(code, reason)


class PeerSession:
    """The server's side of one WebRTC client: peer connection, data channel, link."""

    def __init__(
        self,
        ctx: LinkContext,
        user: User,
        *,
        on_link: Callable[[Link], None],
        on_closed: Callable[[PeerSession, int, str], None],
        ice_servers: list[dict[str, Any]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.user = user
        self.ice_servers = ice_servers or []  # JSON-ready, as the client got them
        self.pc: RTCPeerConnection | None = None
        self.channel: RTCDataChannel | None = None
        self.link: Link | None = None
        self.video_track: SessionVideoTrack | None = None
        self._on_link = on_link
        self._on_closed = on_closed
        self._closing: asyncio.Task[None] | None = None
        self._channel_closed = asyncio.Event()
        self._timer = asyncio.get_running_loop().call_later(ctx.hello_timeout, self._hello_timeout)

    @property
    def is_closing(self) -> bool:
        return self._closing is not None

    async def answer(self, offer_sdp: str) -> str:
        """Answer an SDP offer; the answer carries every local candidate."""
        if self.pc is not None:
            raise ProtocolError("this signaling socket already has a peer connection")
        if len(offer_sdp) > MAX_SDP_CHARS:
            raise ProtocolError(f"SDP offer longer than {MAX_SDP_CHARS} characters")
        pc = self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=rtc_ice_servers(
                    self.ice_servers, stun_only=True, skip=self.ctx.ice_health.unreachable
                )
            )
        )
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state)
        if offers_video(offer_sdp):
            # Added before the offer is applied, so the offer's video m-line takes this
            # transceiver and its codec preference: VP8 only.
            self.video_track = SessionVideoTrack()
            transceiver = pc.addTransceiver(self.video_track, direction="sendonly")
            vp8 = [
                c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"
            ]
            transceiver.setCodecPreferences(vp8)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:  # aiortc reports a bad offer with assorted exception types
            raise ProtocolError(f"bad SDP offer: {exc}") from exc
        return pc.localDescription.sdp

    def _on_state(self) -> None:
        assert self.pc is not None
        if self.pc.connectionState in ("failed", "closed"):
            self.close(1011, f"peer connection {self.pc.connectionState}")

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != DATA_CHANNEL_LABEL or self.link is not None or self.is_closing:
            channel.close()
            return
        self.channel = channel
        link = self.link = Link(self.ctx, self.user, DataChannelTransport(channel, self), "webrtc")
        self._on_link(link)
        link.start()

        def on_message(message: bytes | str) -> None:
            if isinstance(message, str):
                link.fail(ProtocolError("text message on the data channel; protocol is binary"))
            else:
                link.feed(message)

        def on_close() -> None:
            self._channel_closed.set()
            self.close(1000, "data channel closed")

        channel.on("message", on_message)
        channel.on("close", on_close)

    def _hello_timeout(self) -> None:
        if self.link is None or self.link.hello is None:
            self.close(4408, "4408 hello timeout")

    def close(self, code: int = 1000, reason: str = "") -> asyncio.Task[None]:
        """Tear everything down once; every caller gets the same task."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(
                self._shutdown(code, reason), name="peer shutdown"
            )
        return self._closing

    async def _shutdown(self, code: int, reason: str) -> None:
        self._timer.cancel()
        try:
            if self.link is not None:
                self.link.close(code, reason)
            channel = self.channel
            if channel is not None and channel.readyState == "open":
                # A stream reset follows the data queued before it, so a final Error arrives.
                channel.close()
                try:
                    await asyncio.wait_for(self._channel_closed.wait(), _DRAIN_S)
                except TimeoutError:
                    pass
            if self.video_track is not None:
                self.video_track.stop()
            if self.pc is not None:
                # aiortc's close waits on its senders; one stuck encoder must not hang us.
                try:
                    await asyncio.wait_for(self.pc.close(), _PC_CLOSE_S)
                except TimeoutError:
                    log.warning("peer connection of %s did not close in time", self.user.name)
        except Exception:
            log.exception("closing a peer connection of %s", self.user.name)
        finally:
            self._on_closed(self, code, reason)
