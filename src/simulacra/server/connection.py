"""One protocol connection on any carrier: bytes in, session calls out.

::

    carrier (ws binary frame | data channel message)
        │ feed(bytes)
        ▼
    ServerConnection (sans-I/O) ─► Hello  ─► (app's emulators still compiling? wait, bounded)
                                          ─► SessionManager.get ─► Welcome, join as viewer
                                   Input  ─► session.submit_input   (view role: Error 403)
                                   Ack    ─► session.ack
                                   Resync ─► session.resync
                                   Bye    ─► close
    session ─► send_frame(shared, seq, input_seq) ─► header through the state machine,
               tiles bytes shared by the viewer's group ─► transport.write
    bad bytes / out of state ─► Error (conn.fail) ─► close this connection only

The carrier adapter (``signaling.py``, ``peers.py``) implements ``Transport``:
a non-blocking ``write``, the bytes it still buffers, and ``close``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from simulacra.errors import NotFound, ProtocolError, SimulacraError
from simulacra.protocol.messages import (
    TILE_SIZE,
    Ack,
    Bye,
    Error,
    ErrorCode,
    Hello,
    Input,
    Message,
    Resync,
    Welcome,
)
from simulacra.protocol.session import ServerConnection, error_code_for
from simulacra.protocol.wire import encode_message
from simulacra.server.ice import IceHealth, IceSettings
from simulacra.server.sessions import (
    AppRunners,
    AppSession,
    SessionManager,
    SharedFrame,
    Viewer,
)
from simulacra.server.store import User

__all__ = ["Transport", "LinkContext", "Link", "close_code", "CLOSE_REASONS"]

log = logging.getLogger("simulacra.server.connection")

CLOSE_REASONS = {
    400: "malformed message",
    401: "invalid token",
    403: "forbidden",
    404: "not found",
    408: "hello timeout",
    409: "out-of-state message",
    413: "payload too big",
    426: "unsupported version",
    500: "server error",
}


class Transport(Protocol):
    """A carrier of whole protocol messages."""

    def write(self, data: bytes) -> None: ...

    def buffered(self) -> int: ...

    def close(self, code: int, reason: str) -> None: ...

    def supports_video(self) -> bool: ...

    def attach_video(self, session: AppSession) -> None: ...


@dataclass(frozen=True, slots=True)
class LinkContext:
    """What every link of one server shares."""

    sessions: SessionManager
    runners: AppRunners
    compile_wait: float  # seconds a Hello may wait for its app's emulators
    default_app: str
    apps: tuple[str, ...]
    hello_timeout: float
    max_send_buffer: int
    dictionary_slots: int
    on_closed: Callable[[Link], None]
    # Hello(app="viewer", session=<entry id>) opens a shared file's picture (files API).
    open_viewer: Callable[[str, str], AppSession] | None = None
    ice: IceSettings = IceSettings()  # STUN/TURN servers of WebRTC peers (signaling.py)
    ice_health: IceHealth = field(default_factory=IceHealth)  # their latest probes


def close_code(code: int) -> tuple[int, str]:
    """WebSocket close code and reason for a protocol error code: 400 -> 4400."""
    return 4000 + code, f"{code} {CLOSE_REASONS.get(code, 'error')}"


class Link:
    """A protocol connection of one authenticated user; a ``FrameSink`` for its session."""

    def __init__(self, ctx: LinkContext, user: User, transport: Transport, carrier: str) -> None:
        self.ctx = ctx
        self.user = user
        self.carrier = carrier  # "ws" | "webrtc"
        self.transport = transport
        self.conn = ServerConnection()
        self.session: AppSession | None = None
        self.viewer: Viewer | None = None
        self.closed = asyncio.Event()
        self.hello: Hello | None = None
        self._hello_timer: asyncio.TimerHandle | None = None
        self._pending_join: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._hello_timer = asyncio.get_running_loop().call_later(
            self.ctx.hello_timeout, self._hello_timeout
        )

    # -- FrameSink -----------------------------------------------------------

    def congested(self) -> bool:
        return self.transport.buffered() > self.ctx.max_send_buffer

    def buffered(self) -> int:
        return self.transport.buffered()

    def send_message(self, msg: Message) -> None:
        if self.closed.is_set():
            return
        try:
            data = self.conn.send(msg)
        except SimulacraError as exc:
            self.fail(exc)
            return
        self.transport.write(data)

    def send_frame(self, shared: SharedFrame, seq: int, input_seq: int) -> None:
        """Write a group's shared Frame with this connection's seq and input_seq."""
        if self.closed.is_set():
            return
        try:
            # The state machine checks the tile-less header (seq rules); the bytes
            # written are the whole frame, its tiles encoded once for the group.
            data = shared.wire(self.conn.send(shared.header(seq, input_seq)))
        except SimulacraError as exc:
            self.fail(exc)
            return
        self.transport.write(data)

    def abort(self, code: int, message: str) -> None:
        if self.closed.is_set():
            return
        self.transport.write(encode_message(Error(code=ErrorCode(code), message=message[:1024])))
        self.close(*close_code(code))

    # -- input from the carrier ----------------------------------------------

    def feed(self, data: bytes) -> None:
        """Handle one carrier message; a bad one closes this link only."""
        if self.closed.is_set():
            return
        try:
            for msg in self.conn.receive_data(data):
                self._handle(msg)
                if self.closed.is_set():
                    return
        except SimulacraError as exc:
            self.fail(exc)
        except Exception as exc:  # a bug here must not take other links down
            log.exception("link of %s failed", self.user.name)
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        """Send the Error that reports ``exc``, then close."""
        if self.closed.is_set():
            return
        code = error_code_for(exc)
        try:
            if isinstance(exc, SimulacraError):
                data = self.conn.fail(exc)
            else:
                data = encode_message(Error(code=code, message="server error"))
        except SimulacraError:
            data = encode_message(Error(code=code, message=str(exc)[:1024] or "error"))
        self.transport.write(data)
        self.close(*close_code(code))

    def _handle(self, msg: Message) -> None:
        if isinstance(msg, Hello):
            self._hello(msg)
        elif isinstance(msg, Input):
            assert self.session is not None and self.viewer is not None
            # A view-role recipient may page through its own viewer session, nothing else.
            if self.user.role != "control" and self.session.app_name != "viewer":
                # Not fatal: the viewer keeps watching, it just may not steer. A flood
                # of refused inputs gets no more replies than the transport can hold.
                if not self.congested():
                    err = Error(
                        code=ErrorCode.FORBIDDEN, message="view-only user cannot send input"
                    )
                    self.transport.write(encode_message(err))
                return
            self.session.submit_input(self.viewer, msg)
        elif isinstance(msg, Ack):
            assert self.session is not None and self.viewer is not None
            self.session.ack(self.viewer, msg.seq)
        elif isinstance(msg, Resync):
            assert self.session is not None and self.viewer is not None
            self.session.resync(self.viewer)
        elif isinstance(msg, Bye):
            self.close(1000, "bye")
        elif isinstance(msg, Error):
            log.info("client %s sent error %s: %s", self.user.name, msg.code, msg.message)
            self.close(1000, "client error")

    def _hello(self, hello: Hello) -> None:
        self.hello = hello
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        app = hello.app or self.ctx.default_app
        if app == "viewer" and self.ctx.open_viewer is not None:
            self._join(hello, app)
            return
        if app not in self.ctx.apps:
            raise NotFound(f"unknown app {app!r}; known apps: {', '.join(self.ctx.apps)}")
        if hello.mode == "video" and not self.transport.supports_video():
            raise ProtocolError(
                "video mode needs transport=webrtc and an offer with a video m-line"
            )
        if self.ctx.runners.ready(app):
            self._join(hello, app)
        else:
            self._pending_join = asyncio.get_running_loop().create_task(
                self._join_when_built(hello, app), name=f"hello {self.user.name} {app}"
            )

    async def _join_when_built(self, hello: Hello, app: str) -> None:
        """The app's emulators are compiling: wait for them, but not forever."""
        try:
            async with asyncio.timeout(self.ctx.compile_wait):
                await self.ctx.runners.wait(app)
        except TimeoutError:
            self.abort(
                500,
                f"app {app} is still compiling its emulators (first start); try again shortly",
            )
            return
        except Exception as exc:
            self.abort(500, f"app {app} is unavailable: {exc}")
            return
        if self.closed.is_set():
            return
        try:
            self._join(hello, app)
        except SimulacraError as exc:
            self.fail(exc)
        except Exception as exc:
            log.exception("link of %s failed", self.user.name)
            self.fail(exc)

    def _join(self, hello: Hello, app: str) -> None:
        if app == "viewer" and self.ctx.open_viewer is not None:
            session = self.ctx.open_viewer(self.user.name, hello.session)
        else:
            session = self.ctx.sessions.get(self.user.name, app, hello.session)
        welcome = Welcome(
            session=session.name,
            user=self.user.name,
            role=self.user.role,
            app=app,
            width=session.width,
            height=session.height,
            tile_size=TILE_SIZE,
            dictionary_slots=self.ctx.dictionary_slots,
            apps=self.ctx.apps,
        )
        self.transport.write(self.conn.send(welcome))
        self.session = session
        self.viewer = session.join(self, self.user.name, self.user.role, hello.mode)
        if hello.mode == "video":
            self.transport.attach_video(session)

    def _hello_timeout(self) -> None:
        self._hello_timer = None
        if self.closed.is_set() or self.hello is not None:
            return
        err = Error(code=ErrorCode.MALFORMED, message="no Hello within the hello timeout")
        self.transport.write(encode_message(err))
        self.close(4408, "4408 hello timeout")

    # -- teardown ------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Leave the session and close the carrier (idempotent)."""
        if self.closed.is_set():
            return
        self.closed.set()
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        if self._pending_join is not None:
            if self._pending_join is not asyncio.current_task():
                self._pending_join.cancel()
            self._pending_join = None
        if self.session is not None and self.viewer is not None:
            self.session.leave(self.viewer)
        self.transport.close(code, reason)
        self.ctx.on_closed(self)

    def transport_lost(self) -> None:
        """The carrier went away on its own; nothing more can be written."""
        self.close(1006, "transport lost")
