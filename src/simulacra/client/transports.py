"""Carriers for protocol messages: a WebRTC data channel or the WebSocket itself.

::

    open_transport(url, token, "webrtc")                      open_transport(url, token, "ws")
      WS /signal?token=T&transport=webrtc                       WS /signal?token=T&transport=ws
      text {"type":"ice","iceServers"} ◄── (checked; then        binary frame = one message
                          our RTCPeerConnection uses them)
      text {"type":"offer","sdp"} ──────► server
      text {"type":"answer","sdp"} ◄────                        (both directions)
      data channel "sim" opens ─► one message per channel message
      video=True: a recvonly VP8 transceiver in the offer; decoded frames counted,
      RTP payload bytes counted (and recorded)

    every message received (signaling text, protocol, RTP payloads) ─► Recorder (``--record``)

Both carriers offer the same three coroutines, ``send(bytes)``, ``recv() -> bytes``
and ``close()``; ``recv`` raises ``TransportError`` once the carrier is gone.
A refused handshake becomes a ``SimulacraError`` with the server's one-line reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from websockets.asyncio.client import ClientConnection as WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from simulacra.errors import (
    ConfigError,
    Forbidden,
    NotFound,
    PayloadTooBig,
    ProtocolError,
    SimulacraError,
    TransportError,
    Unauthorized,
)
from simulacra.protocol.ice import IceServer, parse_ice_servers
from simulacra.protocol.jsontext import parse_json_object

__all__ = [
    "TRANSPORTS",
    "MAX_MESSAGE_BYTES",
    "MAX_QUEUED_BYTES",
    "MAX_RECORD_BYTES",
    "Recorder",
    "VideoStats",
    "Transport",
    "WsTransport",
    "WebRtcTransport",
    "signal_url",
    "token_from_url",
    "open_transport",
]

_PC_CLOSE_S = 5.0  # how long closing the peer connection or the socket may take

TRANSPORTS = ("webrtc", "ws")

# docs/protocol.md: a message over 1 MiB is rejected before parsing. Signaling
# text (SDP) is far smaller, so the same cap serves the WebSocket.
MAX_MESSAGE_BYTES = 1 << 20
# Messages received over the data channel but not yet read; the server's
# in-flight window keeps this small, the cap only stops a misbehaving peer.
MAX_QUEUED_BYTES = 64 << 20
# A --record file of a long video run grows fast; past this the run fails loudly.
MAX_RECORD_BYTES = 4 << 30

VideoHook = Callable[[float], None]

_STATUS_ERRORS: dict[int, type[SimulacraError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
}
_CLOSE_ERRORS: dict[int, type[SimulacraError]] = {
    4401: Unauthorized,
    4403: Forbidden,
    4404: NotFound,
    4400: ProtocolError,
    4413: PayloadTooBig,
}


def token_from_url(url: str) -> str:
    """The ``token`` query parameter of ``url``, or ``""``."""
    values = parse_qs(urlsplit(url).query).get("token", [])
    return values[0] if values else ""


def signal_url(url: str, token: str, transport: str) -> str:
    """``http://h:p/?token=X`` -> ``ws://h:p/signal?token=T&transport=...``."""
    if transport not in TRANSPORTS:
        raise ConfigError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    parts = urlsplit(url)
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if parts.scheme not in schemes or not parts.netloc:
        raise ConfigError(f"server URL must look like http://host:port, got {url!r}")
    token = token or token_from_url(url)
    if not token:
        raise Unauthorized("no token: pass --token or put ?token= in the URL")
    query = urlencode({"token": token, "transport": transport})
    return urlunsplit((schemes[parts.scheme], parts.netloc, "/signal", query, ""))


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _closed_error(exc: ConnectionClosed) -> SimulacraError:
    """Map a WebSocket close to the error a user should see."""
    if exc.sent is not None and exc.sent.code == 1009:
        return PayloadTooBig(f"server sent a message over {MAX_MESSAGE_BYTES} bytes")
    if exc.rcvd is None:
        return TransportError("connection to the server was lost")
    code, reason = exc.rcvd.code, exc.rcvd.reason
    kind = _CLOSE_ERRORS.get(code, TransportError)
    return kind(f"server closed the connection: {code} {reason}".rstrip())


def _signal_error(obj: dict[str, Any]) -> SimulacraError:
    code = obj.get("code", 0)
    message = str(obj.get("message", "")) or "signaling error"
    kind = _STATUS_ERRORS.get(code, TransportError) if isinstance(code, int) else TransportError
    return kind(f"server error {code}: {message}")


class Recorder:
    """Appends every byte received to one binary file (``--record``), up to ``limit``.

    Messages are written as they arrive, back to back and unframed: the file
    answers "did these bytes ever reach this client", not "in which message".
    """

    __slots__ = ("sink", "limit", "bytes")

    def __init__(self, sink: BinaryIO, *, limit: int = MAX_RECORD_BYTES) -> None:
        self.sink = sink
        self.limit = limit
        self.bytes = 0

    def write(self, data: bytes | str) -> int:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if self.bytes + len(raw) > self.limit:
            raise PayloadTooBig(f"record file would pass its {self.limit}-byte limit")
        self.sink.write(raw)
        self.bytes += len(raw)
        return len(raw)


class VideoStats:
    """What the video track delivered: decoded frames and RTP payload bytes."""

    __slots__ = ("frames", "rtp_bytes", "rtp_packets", "width", "height", "first_at", "last_at")

    def __init__(self) -> None:
        self.frames = 0
        self.rtp_bytes = 0
        self.rtp_packets = 0
        self.width = 0
        self.height = 0
        self.first_at: float | None = None
        self.last_at: float | None = None

    def frame(self, width: int, height: int, now: float) -> None:
        self.frames += 1
        self.width, self.height = width, height
        if self.first_at is None:
            self.first_at = now
        self.last_at = now


class Transport(ABC):
    """One protocol message per ``send``/``recv``."""

    name: str
    video: VideoStats | None = None  # set by carriers that receive a video track

    @abstractmethod
    async def send(self, data: bytes) -> None:
        """Send one protocol message; ``TransportError`` when the carrier is gone."""

    @abstractmethod
    async def recv(self) -> bytes:
        """The next protocol message; ``TransportError`` once the carrier is gone."""

    @abstractmethod
    async def wait_closed(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the server to close; True if it did."""

    @abstractmethod
    async def close(self) -> None:
        """Close everything this transport opened; safe to call twice."""


class WsTransport(Transport):
    """Protocol on binary frames of the signaling WebSocket."""

    name = "ws"

    def __init__(self, ws: WebSocket, *, record: Recorder | None = None) -> None:
        self._ws = ws
        self._record = record

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise _closed_error(exc) from None

    async def recv(self) -> bytes:
        while True:
            try:
                message = await self._ws.recv()
            except ConnectionClosed as exc:
                raise _closed_error(exc) from None
            if self._record is not None:
                self._record.write(message)
            if isinstance(message, bytes):
                return message
            # Text frames carry signaling JSON; only an error matters here.
            obj = _parse_signal(message)
            if obj.get("type") == "error":
                raise _signal_error(obj)

    async def wait_closed(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ws.wait_closed(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        await self._ws.close()


class WebRtcTransport(Transport):
    """Protocol on the data channel ``sim``; the WebSocket only carries signaling."""

    name = "webrtc"

    def __init__(
        self,
        ws: WebSocket,
        *,
        record: Recorder | None = None,
        video: bool = False,
        on_video_frame: VideoHook | None = None,
    ) -> None:
        self._ws = ws
        self._record = record
        self._on_video_frame = on_video_frame
        self._wants_video = video
        # Built by negotiate once the server's ICE servers are known.
        self._pc: RTCPeerConnection | None = None
        self._channel: RTCDataChannel | None = None
        self.ice_servers: tuple[IceServer, ...] = ()
        self._video_task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued_bytes = 0
        self._opened = asyncio.Event()
        self._closed = asyncio.Event()
        self._error: SimulacraError | None = None
        self._watcher: asyncio.Task[None] | None = None

    def _build_peer(self, servers: tuple[IceServer, ...]) -> RTCPeerConnection:
        """The peer connection on the server's ICE servers, with channel "sim" (and video)."""
        rtc_servers = [
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in servers
        ]
        pc = self._pc = RTCPeerConnection(RTCConfiguration(iceServers=rtc_servers))
        if self._wants_video:
            self._want_video(pc)
        channel = self._channel = pc.createDataChannel("sim", ordered=True)
        channel.on("open", self._opened.set)
        channel.on("message", self._on_message)
        channel.on("close", lambda: self._finish(None))
        pc.on("connectionstatechange", lambda: self._on_state(pc))
        return pc

    def _want_video(self, pc: RTCPeerConnection) -> None:
        """A recvonly VP8 transceiver: the offer gets the video m-line the server needs."""
        self.video = VideoStats()
        transceiver = pc.addTransceiver("video", direction="recvonly")
        capabilities = RTCRtpReceiver.getCapabilities("video")
        vp8 = [c for c in capabilities.codecs if c.mimeType == "video/VP8"] if capabilities else []
        if vp8:
            transceiver.setCodecPreferences(vp8)
        # aiortc reports no byte count for inbound RTP; count payloads where they
        # arrive (its per-packet entry point, looked up on the receiver instance).
        receiver = transceiver.receiver
        handle = receiver._handle_rtp_packet
        stats = self.video

        async def counted(packet: Any, arrival_time_ms: int) -> None:
            stats.rtp_packets += 1
            stats.rtp_bytes += len(packet.payload)
            if self._record is not None and not self._closed.is_set():
                try:
                    self._record.write(packet.payload)
                except PayloadTooBig as exc:
                    self._finish(exc)
            await handle(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = counted  # type: ignore[method-assign]
        pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and self._video_task is None:
            self._video_task = asyncio.get_running_loop().create_task(
                self._pull_video(track), name="video frames"
            )

    async def _pull_video(self, track: MediaStreamTrack) -> None:
        # aiortc decodes VP8 in its own thread; recv hands over decoded frames.
        assert self.video is not None
        while not self._closed.is_set():
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.perf_counter()
            self.video.frame(int(frame.width), int(frame.height), now)  # type: ignore[union-attr]
            if self._on_video_frame is not None:
                self._on_video_frame(now)

    def _on_message(self, message: bytes | str) -> None:
        if self._closed.is_set():
            return
        data = message.encode() if isinstance(message, str) else message
        if self._record is not None:
            try:
                self._record.write(data)
            except PayloadTooBig as exc:
                self._finish(exc)
                return
        self._queued_bytes += len(data)
        if self._queued_bytes > MAX_QUEUED_BYTES:
            self._finish(PayloadTooBig(f"over {MAX_QUEUED_BYTES} bytes received and not read"))
            return
        self._queue.put_nowait(data)

    def _on_state(self, pc: RTCPeerConnection) -> None:
        if pc.connectionState in ("failed", "closed"):
            self._finish(TransportError(f"WebRTC connection {pc.connectionState}"))

    def _finish(self, error: SimulacraError | None) -> None:
        if self._closed.is_set():
            return
        self._error = error
        self._closed.set()
        self._queue.put_nowait(None)

    async def negotiate(self, timeout: float) -> None:
        """Take the ICE servers, offer, take the answer, and wait for the channel to open.

        One deadline, ``timeout`` from now, covers all of it (as the browser's one timer).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                self.ice_servers = await self._await_ice()
        except TimeoutError:
            raise TransportError(f"no ICE server list within {timeout:g} s") from None
        except ConnectionClosed as exc:
            raise _closed_error(exc) from None
        pc = self._build_peer(self.ice_servers)
        # aiortc gathers every candidate inside setLocalDescription: no trickle ICE.
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"type": "offer", "sdp": pc.localDescription.sdp}
        try:
            await self._ws.send(json.dumps(offer))
            async with asyncio.timeout_at(deadline):
                answer = await self._await_answer()
        except TimeoutError:
            raise TransportError(f"no SDP answer within {timeout:g} s") from None
        except ConnectionClosed as exc:
            raise _closed_error(exc) from None
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        self._watcher = asyncio.create_task(self._watch_signaling())
        opened = asyncio.create_task(self._opened.wait())
        closed = asyncio.create_task(self._closed.wait())
        try:
            await asyncio.wait(
                {opened, closed},
                timeout=max(0.0, deadline - loop.time()),
                return_when="FIRST_COMPLETED",
            )
        finally:
            opened.cancel()
            closed.cancel()
        if self._closed.is_set():
            raise self._error or TransportError("data channel closed before it opened")
        if not self._opened.is_set():
            raise TransportError(f"data channel did not open within {timeout:g} s")

    async def _await_ice(self) -> tuple[IceServer, ...]:
        """The server's first signaling frame: {"type":"ice","iceServers":[...]}, checked."""
        message = await self._ws.recv()
        if isinstance(message, bytes):
            if self._record is not None:
                self._record.write(message)
            raise ProtocolError("server sent a binary frame before its ICE server list")
        obj = _parse_signal(message)
        if self._record is not None:
            self._record.write(_without_credentials(obj, message))
        if obj.get("type") == "error":
            raise _signal_error(obj)
        if obj.get("type") != "ice":
            raise ProtocolError(
                f"server's first signaling frame must be its ICE server list,"
                f" got type {str(obj.get('type'))[:64]!r}"
            )
        try:
            return parse_ice_servers(obj.get("iceServers"))
        except ProtocolError as exc:
            raise ProtocolError(f"server's ICE server list is invalid: {exc}") from None

    async def _await_answer(self) -> str:
        while True:
            message = await self._ws.recv()
            if self._record is not None:
                self._record.write(message)
            if isinstance(message, bytes):
                continue
            obj = _parse_signal(message)
            if obj.get("type") == "answer" and isinstance(obj.get("sdp"), str):
                return obj["sdp"]
            if obj.get("type") == "error":
                raise _signal_error(obj)

    async def _watch_signaling(self) -> None:
        # The server may report an error on the signaling socket mid-session;
        # a plain close of that socket does not end the data channel.
        try:
            while True:
                message = await self._ws.recv()
                if self._record is not None:
                    self._record.write(message)
                if isinstance(message, str):
                    obj = _parse_signal(message)
                    if obj.get("type") == "error":
                        self._finish(_signal_error(obj))
                        return
        except (ConnectionClosed, ProtocolError):
            return
        except PayloadTooBig as exc:  # the record file is full
            self._finish(exc)

    async def send(self, data: bytes) -> None:
        channel = self._channel
        if self._closed.is_set() or channel is None or channel.readyState != "open":
            raise self._error or TransportError("data channel is closed")
        channel.send(data)

    async def recv(self) -> bytes:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # later calls fail the same way
            raise self._error or TransportError("data channel closed")
        self._queued_bytes -= len(item)
        return item

    async def wait_closed(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._closed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._finish(None)
        for task in (self._watcher, self._video_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # aiortc's close waits on its senders and receivers; never wait forever.
        if self._pc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pc.close(), _PC_CLOSE_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ws.close(), _PC_CLOSE_S)


def _without_credentials(obj: dict[str, Any], message: str) -> str:
    """The ICE frame as recorded: TURN credentials redacted (they stay valid for hours and
    recordings end up attached to bug reports); any other frame as it came."""
    servers = obj.get("iceServers")
    if obj.get("type") != "ice" or not isinstance(servers, list):
        return message
    shown = [
        {**entry, "credential": "<redacted>"}
        if isinstance(entry, dict) and "credential" in entry
        else entry
        for entry in servers
    ]
    return json.dumps({**obj, "iceServers": shown})


def _parse_signal(text: str) -> dict[str, Any]:
    return parse_json_object(text, limit=MAX_MESSAGE_BYTES, what="server's signaling frame")


async def _open_ws(uri: str, timeout: float) -> WebSocket:
    try:
        return await connect(
            uri, max_size=MAX_MESSAGE_BYTES, open_timeout=timeout, compression=None
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        reason = _first_line(
            exc.response.body.decode("utf-8", "replace") if exc.response.body else ""
        )
        kind = _STATUS_ERRORS.get(status, TransportError)
        raise kind(f"server refused the connection: {status} {reason}".rstrip()) from None
    except InvalidURI as exc:
        raise ConfigError(f"bad server URL: {exc}") from None
    except TimeoutError:
        raise TransportError(f"no WebSocket handshake within {timeout:g} s") from None
    except (OSError, WebSocketException) as exc:
        host = urlsplit(uri).netloc
        raise TransportError(f"cannot connect to {host}: {exc}") from None


async def open_transport(
    url: str,
    token: str,
    transport: str,
    *,
    timeout: float = 15.0,
    record: Recorder | None = None,
    video: bool = False,
    on_video_frame: VideoHook | None = None,
) -> Transport:
    """Connect to the server at ``url`` and return an open carrier.

    ``video`` (webrtc only) offers a recvonly VP8 track; ``on_video_frame(t)``
    runs after each decoded frame. ``record`` gets every message received.
    """
    if video and transport != "webrtc":
        raise ConfigError("video mode needs transport webrtc")
    ws = await _open_ws(signal_url(url, token, transport), timeout)
    if transport == "ws":
        return WsTransport(ws, record=record)
    carrier = WebRtcTransport(ws, record=record, video=video, on_video_frame=on_video_frame)
    try:
        await carrier.negotiate(timeout)
    except BaseException:
        await carrier.close()
        raise
    return carrier
