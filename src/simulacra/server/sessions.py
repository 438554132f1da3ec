"""App sessions: one app instance, its framebuffer, and the viewers watching it.

::

    link ──Input──►┐                         (one task per session, one job at a time
    link ──Ack────►┤ events ─► session loop ─► in the worker pool: ordered, off the loop)
    link ──Resync─►┘              │ step(state, input|tick) ─► render ─► framebuffer v
                                  ▼
             viewers behind v, window not full, transport not congested ("ready"),
             by EncoderGroup (viewers whose encoders are in one state):
                 tiles = group.encoder.encode(fb)        once per group, not per viewer
                 SharedFrame: Frame msgpack-encoded once ─► per viewer: its own seq and
                                  │                        input_seq spliced in front
                                  ▼
                       viewer.sink.send_frame(shared, seq, input_seq)

    group {a, b, c} at v4, b's window full at v5:
        fork ─► {b} takes a copy of the v4 encoder (the smaller side copies)
             └► {a, c} encode v5 once
    keyframe (join, Resync, regroup) ─► every viewer keyed in one pass forms one new group

Viewers that joined with one keyframe and got every frame since hold the same
picture and the same tile dictionary, so they would get byte-identical tiles:
they share one encoder. A viewer that skips a frame forks off with a copy
(bounded like any encoder) and rejoins others at its next keyframe: a Resync,
or a regroup once it keeps up again (``_regroup``). For apps
that tick, catch-ups after an Ack wait for the next tick, so the viewers that
acknowledged meanwhile go out together in one encode.

Only the session loop touches a session's state, framebuffer, groups and
encoders, so no locks guard them. A viewer whose window is full is skipped and
gets the latest framebuffer (diffed against what it holds) once it acknowledges.

Apps run through emulators: ``AppRunners`` builds one ``EmulatedRunner`` per
app class, off the loop, and every session of that app shares it::

    AppRunners.wait("2048") ─► to_thread(load_or_compile_segments) ─► EmulatedRunner
                                (compiles once, then data_dir/emulators answers)
    SessionManager.get ─► app_cls(runner=runner) ─► step/render query the emulators
    every refresh_interval: to_thread(runner.refresh) ─► patched segments swapped in,
                            sessions of that app redraw

A viewer in video mode gets its picture from a video track (``peers.py``); its
Frames carry no tiles and only answer its inputs (see docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from simulacra.apps import get_app
from simulacra.apps.base import App, InputEvent, SegmentRunner, reference_runner
from simulacra.codecs.display import (
    DEFLATE_STREAM_BYTES,
    DeflateStream,
    FrameEncoder,
    TileEncodeCache,
    TileGrid,
    TileTable,
    framebuffer_checksum,
    pack_tiles,
)
from simulacra.errors import NotFound, PayloadTooBig, SimulacraError
from simulacra.protocol.messages import Frame, Input, Message, PackedFrame
from simulacra.protocol.wire import MAX_MESSAGE_BYTES, encode_message

__all__ = [
    "FrameSink",
    "SharedFrame",
    "EncoderGroup",
    "FanOutStats",
    "Viewer",
    "AppSession",
    "SessionKey",
    "SessionManager",
    "AppRunners",
    "RunnerLoader",
    "encoder_memory_bound",
    "viewer_memory_bound",
]

log = logging.getLogger("simulacra.server.sessions")

SessionKey = tuple[str, str, str]  # ("private", user, app) or ("shared", app, name)
_RETRY_S = 0.05  # how soon a viewer skipped for a congested transport is tried again
_MAX_BATCH = 256  # events handled per render; bounds the latency of one pass
_SMALL_MESSAGES = 64 * 1024  # Welcome, refusals: written only while the transport is not congested


def encoder_memory_bound(width: int, height: int, *, dictionary_slots: int) -> int:
    """Bytes a viewer's encoder may hold: framebuffer, tile indexes, slots, deflate stream."""
    tiles = (width // 16) * (height // 16)
    return width * height * 3 + tiles * 8 + dictionary_slots * 256 + 4096 + DEFLATE_STREAM_BYTES


def viewer_memory_bound(
    width: int, height: int, *, dictionary_slots: int, max_send_buffer: int
) -> int:
    """Bytes the server may hold for one viewer, however stalled: encoder plus transport.

    Nothing is written to a transport that buffers more than ``max_send_buffer``
    (frames, refusals), and one write is at most one message.
    """
    encoder = encoder_memory_bound(width, height, dictionary_slots=dictionary_slots)
    return encoder + max_send_buffer + MAX_MESSAGE_BYTES + _SMALL_MESSAGES


# The field a group shares: its name, empty value, and that value's msgpack length.
_BODY: dict[type, tuple[str, Any, int]] = {Frame: ("tiles", (), 1), PackedFrame: ("data", b"", 2)}


@dataclass(frozen=True, slots=True)
class SharedFrame:
    """One Frame (or PackedFrame) encoded once for a group; copies differ in seq, input_seq.

    ::

        wire:  [1, 4, seq, input_seq, keyframe, width, height, tiles, checksum]
        wire:  [1, 9, seq, input_seq, keyframe, width, height, count, size, data, checksum]
               ├── head: per viewer ─────────────────────────────────────┤├ shared tail ┤
        header(seq, input_seq) = the message with an empty body (tiles, data); a
        connection sends it through its state machine (sequence checks) and ``wire``
        swaps the empty body for the shared one: encode_message(full frame), byte for byte.
    """

    frame: Frame | PackedFrame  # as built for the group's first viewer
    data: bytes  # encode_message(frame)
    head: int  # where the body starts in ``data`` (and in every header)
    cut: int  # header bytes from there on: the empty body and the checksum

    @classmethod
    def of(cls, frame: Frame | PackedFrame) -> SharedFrame:
        name, empty, empty_len = _BODY[type(frame)]
        data = encode_message(frame)
        bare = encode_message(replace(frame, **{name: empty}))
        # The empty body and the int 0 have fixed msgpack lengths, so this header ends
        # in exactly those bytes and the fields before them are ``head`` long.
        head = len(encode_message(replace(frame, **{name: empty, "checksum": 0}))) - empty_len - 1
        if (
            data[:head] != bare[:head]
            or data[len(data) - len(bare) + head + empty_len :] != bare[head + empty_len :]
        ):
            raise SimulacraError(f"{type(frame).__name__} wire layout is not [..., body, checksum]")
        return cls(frame, data, head, len(bare) - head)

    def header(self, seq: int, input_seq: int) -> Frame | PackedFrame:
        """The body-less message a viewer's connection records as sent."""
        name, empty, _ = _BODY[type(self.frame)]
        return replace(self.frame, seq=seq, input_seq=input_seq, **{name: empty})

    def wire(self, header: bytes) -> bytes:
        """The whole frame's bytes, given ``encode_message(self.header(seq, input_seq))``."""
        data = header[: len(header) - self.cut] + self.data[self.head :]
        if len(data) > MAX_MESSAGE_BYTES:
            raise PayloadTooBig(
                f"{type(self.frame).__name__} message is {len(data)} bytes, "
                f"limit {MAX_MESSAGE_BYTES}"
            )
        return data

    def frame_for(self, seq: int, input_seq: int) -> Frame | PackedFrame:
        """The whole Frame as one viewer gets it (for sinks that take messages only)."""
        return replace(self.frame, seq=seq, input_seq=input_seq)


class FrameSink(Protocol):
    """What a session needs from a viewer's connection.

    ``send_frame`` writes a group's shared frame with this viewer's numbers; a sink
    without it gets ``send_message(shared.frame_for(seq, input_seq))`` instead.
    """

    def congested(self) -> bool: ...

    def send_message(self, msg: Message) -> None: ...

    def send_frame(self, shared: SharedFrame, seq: int, input_seq: int) -> None: ...

    def abort(self, code: int, message: str) -> None: ...

    def buffered(self) -> int: ...


@dataclass(eq=False, slots=True)
class EncoderGroup:
    """Tiles viewers in one encoder state: same picture held, same tile dictionary.

    ``stream``: the deflate stream of its packed-mode viewers (one per group, as
    their streams are identical); None when the group started without any.
    """

    encoder: FrameEncoder
    members: list[Viewer] = field(default_factory=list)
    version: int = -1  # framebuffer version its encoder holds (-1: none yet)
    stream: DeflateStream | None = None


@dataclass(slots=True)
class FanOutStats:
    """What fan-out cost a session: encodes against frames sent, forks and their copies."""

    frames: int = 0  # Frames sent to viewers
    encodes: int = 0  # encoder passes over a framebuffer (one per group and frame)
    keyframes: int = 0  # keyframe encodes (each may serve many viewers)
    forks: int = 0  # encoder copies made when a group split
    fork_bytes: int = 0  # memory those copies held when made
    fork_seconds: float = 0.0  # time spent copying
    regroups: int = 0  # passes that merged drifted-apart groups with one keyframe
    frame_bytes: int = 0  # wire bytes of the Frames sent
    regroup_bytes: int = 0  # of those, what regroup keyframes cost (estimated when decided)


@dataclass(eq=False, slots=True)
class Viewer:
    """One connection watching a session, and what it holds of the picture."""

    sink: FrameSink
    user: str
    role: str
    # "tiles": Frames; "packed": PackedFrames; "video": the picture goes by video
    # track and Frames only answer inputs
    mode: str = "tiles"
    next_seq: int = 1
    acked: int = 0
    applied_input: int = 0  # highest Input seq of this viewer applied to the state
    answered_input: int = 0  # highest input_seq already sent to it in a Frame
    sent_version: int = -1  # framebuffer version it holds (or will, once frames land)
    need_keyframe: bool = True
    pending: int = 0  # its events queued, not yet handled
    left: bool = False
    group: EncoderGroup | None = None  # tiles viewers, from their first keyframe on

    @property
    def in_flight(self) -> int:
        return self.next_seq - 1 - self.acked

    @property
    def encoder(self) -> FrameEncoder | None:
        """The encoder of what this viewer holds (shared with its group)."""
        return self.group.encoder if self.group is not None else None

    @property
    def nbytes(self) -> int:
        """Memory held for this viewer: its (shared) encoder and what its transport buffers."""
        group = self.group
        if group is None:
            return self.sink.buffered()
        stream = group.stream.nbytes if group.stream is not None else 0
        return group.encoder.nbytes + stream + self.sink.buffered()


@dataclass(frozen=True, slots=True)
class _Event:
    kind: str  # "join" | "leave" | "input" | "ack" | "resync" | "redraw" | "stop"
    viewer: Viewer | None = None
    value: Any = None


@dataclass(slots=True)
class _Job:
    """One encode of the current framebuffer for ``viewers``, all members of ``group``."""

    group: EncoderGroup
    viewers: list[Viewer]
    keyframe: bool


@dataclass(frozen=True, slots=True)
class _Encoded:
    """A job's frame in the forms its viewers asked for."""

    tiles: SharedFrame | None  # Frame, for "tiles" viewers
    packed: SharedFrame | None  # PackedFrame, for "packed" viewers

    def for_mode(self, mode: str) -> SharedFrame:
        shared = self.packed if mode == "packed" else self.tiles
        assert shared is not None  # built for every mode among the job's viewers
        return shared


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
        frame_window: int = 8,
        max_pending: int = 64,
        dictionary_slots: int = 4096,
        seed: int | None = None,
        regroup_interval: float = 1.0,
        regroup_budget: float = 0.02,
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
        self._tiles = TileTable(TileGrid(self.width, self.height))  # PackedFrame.checksum
        self._table_checksum = 0
        self._crc: tuple[int, int] | None = None  # (version, Frame.checksum), made when asked
        self._executor = executor
        self._cache = cache
        self._window = frame_window
        self._max_pending = max_pending
        self._slots = dictionary_slots
        self._regroup_interval = regroup_interval
        self._regroup_budget = regroup_budget
        self._last_regroup = -float("inf")
        # The latest keyframe's size per mode: what re-keying one viewer costs.
        self._keyframe_bytes: dict[str, int] = {}
        self._events: asyncio.Queue[_Event] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.stats = FanOutStats()

    # -- called by links (on the event loop) ---------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"session {self.name}"
            )

    def join(self, sink: FrameSink, user: str, role: str, mode: str = "tiles") -> Viewer:
        # Its encoder comes with its first keyframe; a video viewer never has one.
        viewer = Viewer(sink=sink, user=user, role=role, mode=mode)
        self._put(_Event("join", viewer))
        return viewer

    @property
    def groups(self) -> list[EncoderGroup]:
        """The encoder groups of the tiles viewers, each once."""
        found: dict[int, EncoderGroup] = {}
        for v in self.viewers:
            if v.group is not None:
                found.setdefault(id(v.group), v.group)
        return list(found.values())

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

    def redraw(self) -> None:
        """Render again (a segment's emulator was patched); viewers get what changed."""
        self._events.put_nowait(_Event("redraw"))

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
                redraw = any(ev.kind == "redraw" for ev in batch)
                tick = period is not None and bool(self.viewers) and loop.time() >= next_tick
                if tick:
                    assert period is not None
                    # Never try to catch up on missed ticks: a slow step lowers the rate.
                    next_tick = max(next_tick + period, loop.time())
                fresh = bool(inputs or tick or redraw)
                if fresh:
                    await self._call(self._advance, inputs, tick)
                await self._fan_out(fresh)
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
            if viewer is None:  # redraw
                continue
            if ev.kind != "leave":
                viewer.pending -= 1
            if ev.kind == "join":
                if not viewer.left:
                    self.viewers.append(viewer)
            elif ev.kind == "leave":
                if viewer in self.viewers:
                    self.viewers.remove(viewer)
                _detach(viewer)
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
        held = self.framebuffer
        grid = self._tiles.grid
        changed = np.arange(grid.count) if held is None else grid.changed(fb, held)
        if len(changed):
            self.framebuffer = fb
            self._tiles.update(fb, changed)
            self._table_checksum = self._tiles.checksum()
            self.version += 1

    def _frame_crc(self) -> int:
        """Frame.checksum (CRC-32 of the whole picture): only tiles and video viewers need it."""
        fb = self.framebuffer
        assert fb is not None
        if self._crc is None or self._crc[0] != self.version:
            self._crc = (self.version, framebuffer_checksum(fb))
        return self._crc[1]

    def _behind(self, v: Viewer) -> bool:
        if v.mode == "video":
            return v.answered_input < v.applied_input
        return (
            v.need_keyframe or v.sent_version < self.version or v.answered_input < v.applied_input
        )

    def _has_congested_laggard(self) -> bool:
        return any(
            self._behind(v) and v.in_flight < self._window and v.sink.congested()
            for v in self.viewers
        )

    async def _fan_out(self, fresh: bool = True) -> None:
        if self.framebuffer is None:
            return
        ready = [
            v
            for v in self.viewers
            if self._behind(v) and v.in_flight < self._window and not v.sink.congested()
        ]
        if not fresh and self.tick_hz > 0:
            # An Ack's catch-up waits for the next tick (one period at most): viewers that
            # acknowledged meanwhile then share one encode instead of forking one by one.
            ready = [v for v in ready if v.need_keyframe and v.mode != "video"]
        if not ready:
            return
        if fresh:
            self._regroup(ready)
        forks, jobs = self._plan(ready)
        shared: list[_Encoded] = await self._call(self._encode, forks, jobs)
        version = self.version
        for job, encoded in zip(jobs, shared, strict=True):
            for v in job.viewers:
                seq, input_seq = v.next_seq, v.applied_input
                v.next_seq += 1
                v.need_keyframe = v.need_keyframe and not job.keyframe
                v.sent_version = version
                v.answered_input = input_seq
                if not v.left:
                    sent = encoded.for_mode(v.mode)
                    _send_shared(v.sink, sent, seq, input_seq)
                    self.stats.frames += 1
                    self.stats.frame_bytes += len(sent.data)
            if job.keyframe:
                for mode in {v.mode for v in job.viewers}:
                    self._keyframe_bytes[mode] = len(encoded.for_mode(mode).data)
        for v in ready:
            if v.mode == "video":
                frame = Frame(
                    seq=v.next_seq,
                    input_seq=v.applied_input,
                    keyframe=False,
                    width=self.width,
                    height=self.height,
                    tiles=(),
                    checksum=self._frame_crc(),
                )
                v.next_seq += 1
                v.sent_version = version
                v.answered_input = frame.input_seq
                if not v.left:
                    v.sink.send_message(frame)

    def _regroup(self, ready: list[Viewer]) -> None:
        """Re-merge groups that keep up but drifted apart (a hiccup or a late join split them).

        Groups whose every viewer is ready with at most half a window unacknowledged
        would stay apart for good, each costing an encode per picture. With three
        such groups or more, all but the largest get a keyframe this pass and so form
        one group (two remain). Two are left alone: merging them would re-key the
        largest too, and one viewer that keeps falling behind would then re-key the
        whole audience at every merge. At most once per ``regroup_interval`` seconds,
        and only while what regroup
        keyframes cost stays within ``regroup_budget`` of the frame bytes sent: a sand
        keyframe (~1 KB) buys a merge almost every time, a 2048 one (~12 KB) rarely.
        The real cost is higher than the keyframe (the re-keyed lose their tile
        dictionary and stream history), hence a small budget. Measured on 2 cores
        (``bench stream``, 10 s): sand with 50 watchers, merges at most every 10 s of
        three groups or more: 2.7 frames per encode, 21 fps; every second within 2%:
        10-12 frames per encode, 42-46 fps. 2048 with 10 watchers (they trail the
        controller and split again soon): 321 B/frame without merges, 496 with a 5%
        budget, 371-395 with 2%.
        """
        now = time.monotonic()
        if now - self._last_regroup < self._regroup_interval:
            return
        ready_ids = {id(v) for v in ready}
        calm = self._window // 2
        steady = [
            g
            for g in self.groups
            if g.version != self.version
            and all(id(m) in ready_ids and m.in_flight <= calm for m in g.members)
        ]
        if len(steady) < 3:
            return
        steady.sort(key=lambda g: len(g.members), reverse=True)
        # The largest keeps its state; the rest, re-keyed in one pass, form one group.
        rekeyed = [m for group in steady[1:] for m in group.members]
        sizes = self._keyframe_bytes
        cost = sum(sizes.get(m.mode, max(sizes.values(), default=0)) for m in rekeyed)
        stats = self.stats
        if stats.regroup_bytes + cost > self._regroup_budget * stats.frame_bytes:
            return
        for m in rekeyed:
            m.need_keyframe = True
        self._last_regroup = now
        stats.regroups += 1
        stats.regroup_bytes += cost

    def _plan(
        self, ready: list[Viewer]
    ) -> tuple[list[tuple[EncoderGroup, FrameEncoder]], list[_Job]]:
        """Loop side: regroup the ready tiles viewers; the forks to copy, the encodes to run."""
        jobs: list[_Job] = []
        forks: list[tuple[EncoderGroup, FrameEncoder]] = []
        keyed = [v for v in ready if v.mode != "video" and v.need_keyframe]
        if keyed:
            # A keyframe resets the dictionary: every viewer keyed now ends in one state.
            encoder = FrameEncoder(
                self.width, self.height, dictionary_slots=self._slots, cache=self._cache
            )
            packed = any(v.mode == "packed" for v in keyed)
            fresh_group = EncoderGroup(encoder, stream=DeflateStream() if packed else None)
            for v in keyed:
                _detach(v)
                v.group = fresh_group
            fresh_group.members = list(keyed)
            jobs.append(_Job(fresh_group, keyed, keyframe=True))
        movers: dict[int, list[Viewer]] = {}
        for v in ready:
            if v.mode != "video" and not v.need_keyframe:
                assert v.group is not None  # every keyframe sent made one
                movers.setdefault(id(v.group), []).append(v)
        for moving in movers.values():
            group = moving[0].group
            assert group is not None
            moving_ids = {id(v) for v in moving}
            staying = [m for m in group.members if id(m) not in moving_ids]
            if staying and group.version != self.version:
                # The group splits: the smaller side takes a copy of the encoder as it
                # is now (made in the worker before anything is encoded this pass).
                side, rest = (moving, staying) if len(moving) <= len(staying) else (staying, moving)
                fork = EncoderGroup(group.encoder, side, group.version, group.stream)
                for m in side:
                    m.group = fork
                group.members = rest
                forks.append((fork, group.encoder))
                group = moving[0].group
                assert group is not None
            jobs.append(_Job(group, moving, keyframe=False))
        return forks, jobs

    def _encode(
        self, forks: list[tuple[EncoderGroup, FrameEncoder]], jobs: list[_Job]
    ) -> list[_Encoded]:
        """Worker thread: copy the forked encoders, then one encode and one Frame per group.

        A group with a deflate stream compresses every encode, whoever receives it:
        its members are exactly the job's viewers, so the stream stays theirs.
        """
        fb = self.framebuffer
        assert fb is not None
        stats = self.stats
        for fork, source in forks:
            started = time.perf_counter()
            fork.encoder = source.copy()
            if fork.stream is not None:
                fork.stream = fork.stream.copy()
            stats.fork_seconds += time.perf_counter() - started
            stats.forks += 1
            stats.fork_bytes += fork.encoder.nbytes
        out = []
        for job in jobs:
            group = job.group
            if job.keyframe or group.version != self.version:
                tiles = group.encoder.encode(fb, keyframe=job.keyframe)
                group.version = self.version
                stats.encodes += 1
                stats.keyframes += job.keyframe
            else:
                tiles = []  # it holds this picture already: only an input to answer
            lead = job.viewers[0]
            modes = {v.mode for v in job.viewers}
            plain = packed = None
            if group.stream is not None and tiles:
                raw = pack_tiles(tiles)
                data = group.stream.compress(raw, keyframe=job.keyframe)
                count, size = len(tiles), len(raw)
            else:
                data, count, size = b"", 0, 0  # nothing new: the stream stays as it is
            if "packed" in modes:
                packed = SharedFrame.of(
                    PackedFrame(
                        seq=lead.next_seq,
                        input_seq=lead.applied_input,
                        keyframe=job.keyframe,
                        width=self.width,
                        height=self.height,
                        count=count,
                        size=size,
                        data=data,
                        checksum=self._table_checksum,
                    )
                )
            if "tiles" in modes:
                plain = SharedFrame.of(
                    Frame(
                        seq=lead.next_seq,
                        input_seq=lead.applied_input,
                        keyframe=job.keyframe,
                        width=self.width,
                        height=self.height,
                        tiles=tuple(tiles),
                        checksum=self._frame_crc(),
                    )
                )
            out.append(_Encoded(plain, packed))
        return out


def _detach(viewer: Viewer) -> None:
    """Take ``viewer`` out of its encoder group (a group left empty is garbage)."""
    group = viewer.group
    if group is not None:
        group.members = [m for m in group.members if m is not viewer]
        viewer.group = None


def _send_shared(sink: FrameSink, shared: SharedFrame, seq: int, input_seq: int) -> None:
    send_frame = getattr(sink, "send_frame", None)
    if send_frame is not None:
        send_frame(shared, seq, input_seq)
    else:
        sink.send_message(shared.frame_for(seq, input_seq))


@dataclass(slots=True)
class SessionManager:
    """Every app session of one server, by key; idle ones are evicted past ``max_sessions``."""

    make_app: Callable[[str], App]
    executor: Executor | None
    frame_window: int = 8
    max_pending: int = 64
    max_sessions: int = 256
    dictionary_slots: int = 4096
    cache: TileEncodeCache = field(default_factory=TileEncodeCache)
    sessions: dict[SessionKey, AppSession] = field(default_factory=dict)
    regroup_interval: float = 1.0  # seconds between merges of drifted-apart encoder groups
    regroup_budget: float = 0.02  # share of the bytes sent that regroup keyframes may cost

    @staticmethod
    def key_for(user: str, app: str, session: str) -> tuple[SessionKey, str]:
        """The key and the display name of a Hello's session."""
        if session == "":
            return ("private", user, app), f"{user}/{app}"
        return ("shared", app, session), session

    def get(self, user: str, app: str, session: str) -> AppSession:
        key, name = self.key_for(user, app, session)
        return self.get_or_create(key, name, lambda: self.make_app(app))

    def get_or_create(self, key: SessionKey, name: str, make: Callable[[], App]) -> AppSession:
        """The live session under ``key``, or a new one running ``make()``.

        Keeps the bound on sessions: idle ones are evicted, oldest first, or the
        request is refused with ``PayloadTooBig`` when every session is busy.
        """
        found = self.sessions.get(key)
        if found is not None and not found.closed.is_set():
            return found
        self._evict()
        created = AppSession(
            key,
            name,
            make(),
            executor=self.executor,
            cache=self.cache,
            frame_window=self.frame_window,
            max_pending=self.max_pending,
            dictionary_slots=self.dictionary_slots,
            regroup_interval=self.regroup_interval,
            regroup_budget=self.regroup_budget,
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

    def redraw(self, app: str) -> None:
        """Every live session of ``app`` renders again (its emulators changed)."""
        for session in self.sessions.values():
            if session.app_name == app and not session.closed.is_set():
                session.redraw()

    @property
    def viewer_count(self) -> int:
        return sum(len(s.viewers) for s in self.sessions.values())

    async def end(self, key: SessionKey, code: int, reason: str) -> None:
        """End one session: its viewers get ``Error(code, reason)`` and are closed."""
        session = self.sessions.pop(key, None)
        if session is None:
            return
        for viewer in list(session.viewers):
            viewer.sink.abort(code, reason)
        await session.close()

    async def close(self) -> None:
        sessions = list(self.sessions.values())
        self.sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


RunnerLoader = Callable[[type[App], Path, bool], SegmentRunner]
_MAX_PATCH_PAIRS_SHOWN = 256  # per version in the status; the manifest has them all


def _emulated_loader(app_cls: type[App], data_dir: Path, progress: bool) -> SegmentRunner:
    from simulacra.apps.emulation import load_or_compile_segments

    return load_or_compile_segments(app_cls, data_dir, progress=progress)


def _reference_loader(app_cls: type[App], data_dir: Path, progress: bool) -> SegmentRunner:
    return reference_runner(app_cls.segments)


class AppRunners:
    """One ``SegmentRunner`` per app, built once off the event loop and shared by its sessions.

    ``load(app_cls, data_dir, progress)`` is blocking (it may compile for a while);
    it runs in a thread. A failed build is forgotten, so the next request retries.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        reference: bool = False,
        progress: bool = False,
        load: RunnerLoader | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.mode = "reference" if reference else "emulated"
        self._progress = progress
        self._load: RunnerLoader = load or (_reference_loader if reference else _emulated_loader)
        self._runners: dict[str, SegmentRunner] = {}
        self._classes: dict[str, type[App]] = {}
        self._building: dict[str, asyncio.Task[SegmentRunner]] = {}
        self._errors: dict[str, str] = {}

    def ready(self, app: str) -> bool:
        return app in self._runners

    def runner(self, app: str) -> SegmentRunner:
        """The runner of an app already built (``wait`` first)."""
        try:
            return self._runners[app]
        except KeyError:
            raise NotFound(f"app {app!r} has no runner yet") from None

    def app_class(self, app: str) -> type[App]:
        return self._classes.get(app) or get_app(app)

    def make_app(self, app: str) -> App:
        return self._classes[app](runner=self.runner(app))

    async def wait(self, app: str) -> SegmentRunner:
        """The app's runner; the first caller starts the build, the others wait on it."""
        found = self._runners.get(app)
        if found is not None:
            return found
        task = self._building.get(app)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._build(app), name=f"build {app}")
            # Every waiter may have given up; the failure is kept in _errors, not lost.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._building[app] = task
        # A waiter that gives up must not cancel the build the others share.
        return await asyncio.shield(task)

    async def _build(self, app: str) -> SegmentRunner:
        try:
            app_cls = get_app(app)
            runner = await _in_daemon_thread(
                f"build {app}", self._load, app_cls, self.data_dir, self._progress
            )
        except Exception as exc:
            self._errors[app] = str(exc) or type(exc).__name__
            if not isinstance(exc, SimulacraError):
                log.exception("building the runner of %s failed", app)
            raise
        finally:
            self._building.pop(app, None)
        self._errors.pop(app, None)
        self._classes[app] = app_cls
        self._runners[app] = runner
        return runner

    async def refresh(self) -> list[str]:
        """Reload patched segments of every built runner (off the loop); apps that changed."""
        changed = []
        for app, runner in list(self._runners.items()):
            refresh = getattr(runner, "refresh", None)
            if refresh is None:
                continue
            try:
                names = await asyncio.to_thread(refresh)
            except (SimulacraError, OSError) as exc:
                log.warning("reloading the emulators of %s failed: %s", app, exc)
                continue
            if names:
                log.info("app %s: patched segments reloaded: %s", app, ", ".join(names))
                changed.append(app)
        return changed

    def state(self, app: str) -> str:
        if app in self._runners:
            return "ready"
        if app in self._building:
            return "compiling"
        if app in self._errors:
            return "failed"
        return "not loaded"

    def status(self, apps: tuple[str, ...]) -> dict[str, Any]:
        """Per app and segment: sizes, verification, queries, fallbacks, patches (blocking)."""
        out: dict[str, Any] = {}
        for app in apps:
            entry: dict[str, Any] = {"state": self.state(app), "mode": self.mode}
            if app in self._errors:
                entry["error"] = self._errors[app]
            runner = self._runners.get(app)
            if runner is not None:
                entry["segments"] = _segments_status(self._classes[app], runner)
            out[app] = entry
        return out


async def _in_daemon_thread(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a daemon thread: Ctrl-C during a long first compile exits at once.

    (A pool thread would hold the process until the compile ends; cache files are
    written by rename, so an interrupted compile leaves nothing half-written.)
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: BaseException | None, value: Any) -> None:
        if future.done():
            return
        if outcome is not None:
            future.set_exception(outcome)
        else:
            future.set_result(value)

    def work() -> None:
        try:
            value, outcome = fn(*args), None
        except BaseException as exc:
            value, outcome = None, exc
        try:
            loop.call_soon_threadsafe(settle, outcome, value)
        except RuntimeError:
            pass  # the loop is gone: nobody waits any more

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future


def _segments_status(app_cls: type[App], runner: SegmentRunner) -> dict[str, Any]:
    emulators: dict[str, Any] = getattr(runner, "emulators", {})
    stats: dict[str, dict[str, int]] = runner.stats() if hasattr(runner, "stats") else {}
    segments: dict[str, Any] = {}
    for seg in app_cls.segments:
        emu = emulators.get(seg.name)
        stat = stats.get(seg.name, {})
        report = emu.report() if emu is not None else {}
        verified = report.get("verified", {})
        entry: dict[str, Any] = {
            "in_bits": seg.in_bits,
            "out_bits": seg.out_bits,
            "bytes": int(emu.nbytes) if emu is not None else None,
            "packed_bytes": -(-(1 << seg.in_bits) * seg.out_bits // 8),
            "verified": verified.get("kind", "none") if isinstance(verified, dict) else None,
            "queries": stat.get("queries", 0),
            "fallbacks": stat.get("fallbacks", 0),
            "version": stat.get("version", 0),
            "patches": [],
            # Inputs where fixes are dense or the model is unsure: where a human looks first.
            "review_regions": report.get("review_regions", []),
        }
        if emu is not None and hasattr(runner, "patches"):
            for v in runner.patches(seg.name):
                pairs = [list(p) for p in v.patches[:_MAX_PATCH_PAIRS_SHOWN]]
                entry["patches"].append(
                    {"version": v.version, "count": len(v.patches), "pairs": pairs}
                )
        segments[seg.name] = entry
    return segments
