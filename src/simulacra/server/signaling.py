"""The signaling WebSocket: ``/signal?token=T&transport=webrtc|ws``.

::

    transport=ws      binary frames ──► Link.feed ──► ...   Link ──► WsTransport ──► binary frames
    transport=webrtc  text {"type":"ice","iceServers"} first (ice.py: STUN/TURN, fresh TURN
                      credentials), then
                      text {"type":"offer"} ──► PeerSession.answer ──► text {"type":"answer"}
                      (then the protocol runs on the data channel; closing this socket
                       closes the peer, closing the peer closes this socket)

The token was checked in ``process_request`` before the upgrade; a handler
only runs for an authenticated user.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection as WsConnection
from websockets.exceptions import ConnectionClosed

from simulacra.errors import ProtocolError
from simulacra.protocol.jsontext import parse_json_object
from simulacra.server.connection import Link, LinkContext
from simulacra.server.ice import ice_servers_for
from simulacra.server.peers import PeerSession
from simulacra.server.sessions import AppSession
from simulacra.server.store import User

__all__ = ["WsTransport", "serve_ws_link", "serve_webrtc_signaling", "MAX_SEND_QUEUE"]

log = logging.getLogger("simulacra.server.signaling")

MAX_SIGNAL_CHARS = 256 * 1024  # an SDP offer with every candidate is a few KiB
MAX_SEND_QUEUE = 256  # messages; frames are bounded by the window, so this means a bug or abuse


class WsTransport:
    """``Transport`` over the WebSocket's binary frames, written by one task in order."""

    def __init__(self, ws: WsConnection) -> None:
        self.ws = ws
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self.done = asyncio.get_running_loop().create_task(self._writer(), name="ws writer")

    def write(self, data: bytes) -> None:
        if self._close is not None:
            return
        if len(self._queue) >= MAX_SEND_QUEUE:
            self.close(4413, "413 send queue overflow")
            return
        self._queue.append(data)
        self._queued_bytes += len(data)
        self._wake.set()

    def buffered(self) -> int:
        transport = self.ws.transport
        pending = transport.get_write_buffer_size() if transport is not None else 0
        return self._queued_bytes + pending

    def supports_video(self) -> bool:
        return False

    def attach_video(self, session: AppSession) -> None:
        raise AssertionError("video mode is refused on the ws transport")

    def close(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, reason)
            self._wake.set()

    async def _writer(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    data = self._queue.popleft()
                    self._queued_bytes -= len(data)
                    await self.ws.send(data)
                if self._close is not None:
                    code, reason = self._close
                    await self.ws.close(code if code != 1006 else 1000, reason)
                    return
        except ConnectionClosed:
            pass


async def serve_ws_link(
    ws: WsConnection, ctx: LinkContext, user: User, on_link: Callable[[Link], None]
) -> None:
    """Run the protocol on this socket's binary frames until either side closes."""
    transport = WsTransport(ws)
    link = Link(ctx, user, transport, "ws")
    on_link(link)
    link.start()
    try:
        async for message in ws:
            if isinstance(message, str):
                link.fail(ProtocolError("text frame on a ws transport; protocol is binary"))
            else:
                link.feed(message)
            if link.closed.is_set():
                break
    except ConnectionClosed:
        pass
    finally:
        link.transport_lost()
        transport.close(1000, "")
        await transport.done


async def _send_json(ws: WsConnection, obj: dict[str, object]) -> None:
    try:
        await ws.send(json.dumps(obj))
    except ConnectionClosed:
        pass


async def serve_webrtc_signaling(
    ws: WsConnection,
    ctx: LinkContext,
    user: User,
    *,
    on_link: Callable[[Link], None],
    on_peer: Callable[[PeerSession], None],
    on_peer_closed: Callable[[PeerSession], None],
) -> None:
    """Answer one offer, then keep the socket as the peer's lifeline."""

    def closed(peer: PeerSession, code: int, reason: str) -> None:
        on_peer_closed(peer)
        # Closing from inside this callback would wait on ourselves; let it run apart.
        asyncio.get_running_loop().create_task(ws.close(code if code != 1006 else 1000, reason))

    # Sent before anything else: the client builds its peer connection from this list.
    ice_servers = ice_servers_for(ctx.ice, user.name, time.time())
    await _send_json(ws, {"type": "ice", "iceServers": ice_servers})
    peer = PeerSession(ctx, user, on_link=on_link, on_closed=closed, ice_servers=ice_servers)
    on_peer(peer)
    code, reason = 1000, "signaling closed"
    try:
        async for message in ws:
            try:
                if isinstance(message, bytes):
                    raise ProtocolError("binary frame on webrtc signaling; send a JSON offer")
                obj = parse_json_object(message, limit=MAX_SIGNAL_CHARS, what="signaling message")
                if not isinstance(obj.get("type"), str):
                    raise ProtocolError("signaling message must be an object with a type")
                if obj["type"] == "offer" and isinstance(obj.get("sdp"), str):
                    answer = await peer.answer(obj["sdp"])
                    await _send_json(ws, {"type": "answer", "sdp": answer})
                elif obj["type"] == "bye":
                    break
                else:
                    raise ProtocolError(f"unexpected signaling message {obj['type'][:64]!r}")
            except ProtocolError as exc:
                await _send_json(ws, {"type": "error", "code": 400, "message": str(exc)})
                code, reason = 4400, "4400 malformed message"
                break
    except ConnectionClosed:
        pass
    finally:
        await peer.close(code, reason)
