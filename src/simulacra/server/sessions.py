"""App sessions: one app instance, its framebuffer, and the viewers watching it.

::

    link ──Input──►┐                         (one task per session, one job at a time
    link ──Ack────►┤ events ─► session loop ─► in the worker pool: ordered, off the loop)
    link ──Resync─►┘              │ step(state, input|tick) ─► render ─► framebuffer v
                                  ▼
             for each viewer behind v, window not full, transport not congested:
                 Frame(seq, input_seq, keyframe, tiles = viewer.encoder.encode(fb))
                                  │
                                  ▼
                       viewer.sink.send_message(frame)

Only the session loop touches a session's state, framebuffer and viewers'
encoders, so no locks guard them. A viewer whose window is full is skipped and
gets the latest framebuffer (diffed against what it holds) on its next Ack.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from simulacra.apps.base import App, InputEvent
from simulacra.codecs.display import FrameEncoder, TileEncodeCache, framebuffer_checksum
from simulacra.errors import PayloadTooBig
from simulacra.protocol.messages import Frame, Input, Message

__all__ = ["FrameSink", "Viewer", "AppSession", "SessionKey", "SessionManager"]

log = logging.getLogger("simulacra.server.sessions")

SessionKey = tuple[str, str, str]  # ("private", user, app) or ("shared", app, name)
_RETRY_S = 0.05  # how soon a viewer skipped for a congested transport is tried again
_MAX_BATCH = 256  # events handled per render; bounds the latency of one pass


class FrameSink(Protocol):
    """What a session needs from a viewer's connection."""

    def congested(self) -> bool: ...

    def send_message(self, msg: Message) -> None: ...

    def abort(self, code: int, message: str) -> None: ...


@dataclass(eq=False, slots=True)
class Viewer:
    """One connection watching a session, and what it holds of the picture."""

    sink: FrameSink
    user: str
    role: str
    encoder: FrameEncoder
    next_seq: int = 1
    acked: int = 0
    applied_input: int = 0  # highest Input seq of this viewer applied to the state
    answered_input: int = 0  # highest input_seq already sent to it in a Frame
    sent_version: int = -1  # framebuffer version it holds (or will, once frames land)
    need_keyframe: bool = True
    pending: int = 0  # its events queued, not yet handled
    left: bool = False

    @property
    def in_flight(self) -> int:
        return self.next_seq - 1 - self.acked


@dataclass(frozen=True, slots=True)
class _Event:
    kind: str  # "join" | "leave" | "input" | "ack" | "resync" | "stop"
    viewer: Viewer | None = None
    value: Any = None


@dataclass(slots=True)
class _Encoded:
    viewer: Viewer
    frame: Frame
    version: int


class AppSession:
    """One running app instance and its viewers."""

    def __init__(
        self,
        key: SessionKey,
        name: str,
        app: App,
        *,
        executor: Executor | None,
        cache: TileEncodeCache,
        frame_window: int = 4,
        max_pending: int = 64,
        dictionary_slots: int = 4096,
        seed: int | None = None,
    ) -> None:
        self.key = key
        self.name = name
        self.app = app
        self.app_name = type(app).name
        self.width = type(app).width
        self.height = type(app).height
        self.tick_hz = float(type(app).tick_hz)
        self.seed = secrets.randbits(31) if seed is None else seed
        self.viewers: list[Viewer] = []
        self.version = -1
        self.framebuffer: np.ndarray | None = None
        self._state: Any = None
        self._checksum = 0
        self._executor = executor
        self._cache = cache
        self._window = frame_window
        self._max_pending = max_pending
        self._slots = dictionary_slots
        self._events: asyncio.Queue[_Event] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    # -- called by links (on the event loop) ---------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"session {self.name}"
            )

    def join(self, sink: FrameSink, user: str, role: str) -> Viewer:
        encoder = FrameEncoder(
            self.width, self.height, dictionary_slots=self._slots, cache=self._cache
        )
        viewer = Viewer(sink=sink, user=user, role=role, encoder=encoder)
        self._put(_Event("join", viewer))
        return viewer

    def leave(self, viewer: Viewer) -> None:
        if not viewer.left:
            viewer.left = True
            self._events.put_nowait(_Event("leave", viewer))

    def submit_input(self, viewer: Viewer, msg: Input) -> None:
        self._put(_Event("input", viewer, msg))

    def ack(self, viewer: Viewer, seq: int) -> None:
        self._put(_Event("ack", viewer, seq))

    def resync(self, viewer: Viewer) -> None:
        self._put(_Event("resync", viewer))

    @property
    def idle(self) -> bool:
        return not self.viewers and self._events.empty()

    async def close(self) -> None:
        if self._task is None:
            self.closed.set()
            return
        self._events.put_nowait(_Event("stop"))
        await asyncio.shield(self._task)

    def _put(self, event: _Event) -> None:
        viewer = event.viewer
        assert viewer is not None
        if viewer.left:
            return
        if viewer.pending >= self._max_pending:
            raise PayloadTooBig(f"more than {self._max_pending} messages waiting")
        viewer.pending += 1
        self._events.put_nowait(event)

    # -- the session loop ----------------------------------------------------

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._call(self._reset)
            period = 1.0 / self.tick_hz if self.tick_hz > 0 else None
            next_tick = loop.time()
            while True:
                timeout: float | None = None
                if period is not None and self.viewers:
                    timeout = max(0.0, next_tick - loop.time())
                if self._has_congested_laggard():
                    timeout = _RETRY_S if timeout is None else min(timeout, _RETRY_S)
                batch = await self._next_batch(timeout)
                if any(ev.kind == "stop" for ev in batch):
                    return
                inputs = self._apply_events(batch)
                tick = period is not None and bool(self.viewers) and loop.time() >= next_tick
                if tick:
                    assert period is not None
                    # Never try to catch up on missed ticks: a slow step lowers the rate.
                    next_tick = max(next_tick + period, loop.time())
                if inputs or tick:
                    await self._call(self._advance, inputs, tick)
                await self._fan_out()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("session %s failed", self.name)
            for viewer in list(self.viewers):
                viewer.sink.abort(500, f"session {self.name} failed: {type(exc).__name__}")
            self.viewers.clear()
        finally:
            self.closed.set()

    async def _next_batch(self, timeout: float | None) -> list[_Event]:
        try:
            first = await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            return []
        batch = [first]
        while len(batch) < _MAX_BATCH and not self._events.empty():
            batch.append(self._events.get_nowait())
        return batch

    def _apply_events(self, batch: list[_Event]) -> list[tuple[Viewer, Input]]:
        """Handle joins, leaves, acks and resyncs; return the inputs to step, in order."""
        inputs: list[tuple[Viewer, Input]] = []
        for ev in batch:
            viewer = ev.viewer
            assert viewer is not None
            if ev.kind != "leave":
                viewer.pending -= 1
            if ev.kind == "join":
                if not viewer.left:
                    self.viewers.append(viewer)
            elif ev.kind == "leave":
                if viewer in self.viewers:
                    self.viewers.remove(viewer)
            elif ev.kind == "input":
                inputs.append((viewer, ev.value))
            elif ev.kind == "ack":
                # Acks for frames never sent are ignored, not trusted.
                viewer.acked = max(viewer.acked, min(int(ev.value), viewer.next_seq - 1))
            elif ev.kind == "resync":
                viewer.need_keyframe = True
        return inputs

    def _reset(self) -> None:
        self._state = self.app.reset(self.seed)
        self._render()

    def _advance(self, inputs: list[tuple[Viewer, Input]], tick: bool) -> None:
        """Worker thread: apply inputs (then one tick) and render once."""
        state = self._state
        for viewer, msg in inputs:
            event = InputEvent(kind=msg.kind, key=msg.key, x=msg.x, y=msg.y, buttons=msg.buttons)
            state = self.app.step(state, event)
            viewer.applied_input = max(viewer.applied_input, msg.seq)
        if tick:
            state = self.app.step(state, None)
        self._state = state
        self._render()

    def _render(self) -> None:
        fb = np.ascontiguousarray(self.app.render(self._state), dtype=np.uint8)
        if fb.shape != (self.height, self.width, 3):
            raise ValueError(f"app {self.app_name} rendered {fb.shape}")
        if self.framebuffer is None or not np.array_equal(fb, self.framebuffer):
            self.framebuffer = fb
            self._checksum = framebuffer_checksum(fb)
            self.version += 1

    def _behind(self, v: Viewer) -> bool:
        return (
            v.need_keyframe or v.sent_version < self.version or v.answered_input < v.applied_input
        )

    def _has_congested_laggard(self) -> bool:
        return any(
            self._behind(v) and v.in_flight < self._window and v.sink.congested()
            for v in self.viewers
        )

    async def _fan_out(self) -> None:
        if self.framebuffer is None:
            return
        ready = [
            v
            for v in self.viewers
            if self._behind(v) and v.in_flight < self._window and not v.sink.congested()
        ]
        if not ready:
            return
        encoded: list[_Encoded] = await self._call(self._encode, ready)
        for item in encoded:
            v = item.viewer
            v.next_seq += 1
            v.need_keyframe = v.need_keyframe and not item.frame.keyframe
            v.sent_version = item.version
            v.answered_input = item.frame.input_seq
            if not v.left:
                v.sink.send_message(item.frame)

    def _encode(self, viewers: list[Viewer]) -> list[_Encoded]:
        """Worker thread: one Frame per viewer, against what that viewer holds."""
        fb = self.framebuffer
        assert fb is not None
        out = []
        for v in viewers:
            keyframe = v.need_keyframe
            tiles = v.encoder.encode(fb, keyframe=keyframe)
            frame = Frame(
                seq=v.next_seq,
                input_seq=v.applied_input,
                keyframe=keyframe,
                width=self.width,
                height=self.height,
                tiles=tuple((int(i), int(e), bytes(d)) for i, e, d in tiles),
                checksum=self._checksum,
            )
            out.append(_Encoded(v, frame, self.version))
        return out


@dataclass(slots=True)
class SessionManager:
    """Every app session of one server, by key; idle ones are evicted past ``max_sessions``."""

    make_app: Callable[[str], App]
    executor: Executor | None
    frame_window: int = 4
    max_pending: int = 64
    max_sessions: int = 256
    dictionary_slots: int = 4096
    cache: TileEncodeCache = field(default_factory=TileEncodeCache)
    sessions: dict[SessionKey, AppSession] = field(default_factory=dict)

    @staticmethod
    def key_for(user: str, app: str, session: str) -> tuple[SessionKey, str]:
        """The key and the display name of a Hello's session."""
        if session == "":
            return ("private", user, app), f"{user}/{app}"
        return ("shared", app, session), session

    def get(self, user: str, app: str, session: str) -> AppSession:
        key, name = self.key_for(user, app, session)
        found = self.sessions.get(key)
        if found is not None and not found.closed.is_set():
            return found
        self._evict()
        created = AppSession(
            key,
            name,
            self.make_app(app),
            executor=self.executor,
            cache=self.cache,
            frame_window=self.frame_window,
            max_pending=self.max_pending,
            dictionary_slots=self.dictionary_slots,
        )
        self.sessions[key] = created
        created.start()
        return created

    def _evict(self) -> None:
        if len(self.sessions) < self.max_sessions:
            return
        # dicts keep insertion order, so the first idle session is the oldest one.
        for key, session in list(self.sessions.items()):
            if session.idle or session.closed.is_set():
                del self.sessions[key]
                asyncio.get_running_loop().create_task(session.close())
                if len(self.sessions) < self.max_sessions:
                    return
        raise PayloadTooBig(f"server holds {self.max_sessions} busy sessions")

    @property
    def viewer_count(self) -> int:
        return sum(len(s.viewers) for s in self.sessions.values())

    async def close(self) -> None:
        sessions = list(self.sessions.values())
        self.sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
