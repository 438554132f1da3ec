"""The headless client: plays an app over the real protocol and reports figures.

::

    HeadlessClient.run()                     Player (sans-I/O)
      open_transport ─► carrier
      carrier.send ◄──────────────────────── start():  Hello
      carrier.recv ─► bytes, t ────────────► receive(): Welcome ─► FrameDecoder
                                              Frame ─► apply tiles ─► crc32 == checksum?
                                              PackedFrame ─► inflate (stream) ─► unpack
                                                 ─► apply tiles ─► tile table == checksum?
                                                 yes: Ack(seq)      no: count, Resync once
                                              frame.input_seq >= pending seq:
                                                 latency = t - t_sent; next Input(seq+1)
      carrier.send ◄──────────────────────── acks, resyncs, inputs
      ...until moves / frames / seconds ─────► finish(): Bye ─► close ─► report()

``Player`` holds every decision and every figure; it never touches a socket or a
clock (the adapter passes ``perf_counter`` times in), so tests drive it with a
``ServerConnection`` in place of the network.

Around the stream, the files API (``/api``) when the server has one::

    FilesClient /api ─► t0 (connected) ─► --open CODE: redeem ─► entry
                                          Hello(app="viewer", session=entry id)
                      ◄── pushed {"op":"inbox","entry"} ─► Inbox: by id, received_ms - t0
    Recorder (--record FILE) ◄── every message of /api, /signal, data channel, RTP payloads

Packed mode (``mode="packed"``, the default): frames arrive as PackedFrames,
their tiles inflated from one deflate stream per connection (reset by every
keyframe); a chunk that does not inflate is cured like a bad checksum. Their
checksum is the tile-table checksum (``tiles.TileTable``): it covers the whole
picture but costs the client only the tiles the frame wrote.

Video mode (``mode="video"``): pictures arrive on a VP8 track (counted, not
verified: VP8 is lossy); Frames only answer Inputs, so latency is measured as
in tile mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np

from simulacra.client.stats import LatencyStats
from simulacra.client.transports import (
    TRANSPORTS,
    Recorder,
    Transport,
    VideoStats,
    open_transport,
)
from simulacra.codecs.display import FrameDecoder, InflateStream, Tile, unpack_tiles
from simulacra.errors import (
    CodecError,
    ConfigError,
    Forbidden,
    InvalidState,
    NotFound,
    PayloadTooBig,
    ProtocolError,
    SimulacraError,
    TransportError,
    Unauthorized,
    UnsupportedVersion,
)
from simulacra.protocol.messages import (
    Ack,
    Bye,
    Error,
    Frame,
    Hello,
    Input,
    PackedFrame,
    Resync,
    Welcome,
)
from simulacra.protocol.session import ClientConnection

__all__ = [
    "AGENT",
    "MOVE_KEYS",
    "PAGE_KEYS",
    "MODES",
    "ClientOptions",
    "FrameHook",
    "Inbox",
    "Player",
    "OPEN_FIELDS",
    "VIEWER_APP",
    "HeadlessClient",
    "error_for",
    "open_info",
]

AGENT = "simulacra-headless/0.1"
MOVE_KEYS = ("ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown")
PAGE_KEYS = ("ArrowDown", "ArrowUp", "PageDown", "PageUp", "Home", "End")
MODES = ("packed", "tiles", "video")
VIEWER_APP = "viewer"  # docs/protocol.md "Files API": Hello(app="viewer", session=entry id)
# What the report shows of an opened entry: never its code, locator or hash.
OPEN_FIELDS = ("name", "size", "type", "rights")
# Inbox entries kept per run; a flood past this is counted, not stored.
MAX_INBOX = 10_000
# 2048 stops changing once the board is stuck; after this many answers without
# a changed tile the client restarts the game, so long runs keep streaming.
STUCK_ANSWERS = 8
# Acks are cumulative: one for every other verified frame halves the acks and the
# transport packets they cost both ends (on WebRTC each Ack is a DTLS record and
# an SCTP SACK back). None waits longer than ACK_DELAY_S; keyframes at once.
ACK_EVERY = 2
ACK_DELAY_S = 0.05

# Called after each verified frame with the picture (the decoder's own array:
# copy it to keep it) and the size of the Frame message in bytes.
FrameHook = Callable[[np.ndarray, int], None]

_ERROR_KINDS: dict[int, type[SimulacraError]] = {
    400: ProtocolError,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: InvalidState,
    413: PayloadTooBig,
    426: UnsupportedVersion,
}


def error_for(code: int, message: str) -> SimulacraError:
    """The exception for a protocol ``Error(code, message)`` from the server."""
    return _ERROR_KINDS.get(int(code), TransportError)(f"server error {int(code)}: {message}")


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """What to connect to and when to stop.

    The run stops at the first limit reached: ``moves`` inputs answered,
    ``frames`` frames received (decoded video frames in video mode), ``seconds``
    elapsed since Welcome. ``moves=None`` means no limit on moves (keep playing
    until another limit); ``moves=0`` only watches.

    ``open_code`` redeems a regeneration code and streams the viewer of its
    entry; ``record`` names a file that gets every byte received; ``inbox``
    listens on the files API for entries delivered while connected (skipped
    quietly when the server has no files API).
    """

    url: str
    token: str = ""
    transport: str = "webrtc"
    moves: int | None = 60
    frames: int | None = None
    seconds: float | None = None
    app: str = ""
    session: str = ""
    mode: str = "packed"
    seed: int = 0
    timeout: float = 15.0  # connect, Welcome, and each frame awaited
    agent: str = AGENT
    open_code: str = ""
    record: str = ""  # path; "" records nothing
    inbox: bool = True

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(
                f"transport must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}"
            )
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "video" and self.transport != "webrtc":
            raise ConfigError("video mode needs transport webrtc")
        if self.open_code and (self.app not in ("", VIEWER_APP) or self.session):
            raise ConfigError("--open streams the viewer of the code's entry: drop --app/--session")
        for name in ("moves", "frames"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if self.seconds is not None and not self.seconds > 0:
            raise ConfigError(f"seconds must be > 0, got {self.seconds}")
        if self.moves is None and self.frames is None and self.seconds is None:
            raise ConfigError("give at least one limit: moves, frames or seconds")
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be > 0, got {self.timeout}")


class Player:
    """Sans-I/O client logic: received bytes and their arrival time in, bytes out."""

    def __init__(self, options: ClientOptions, *, on_frame: FrameHook | None = None) -> None:
        self.options = options
        self.on_frame = on_frame
        self.conn = ClientConnection()
        self.latency = LatencyStats()
        self._rng = random.Random(options.seed)
        self.welcome: Welcome | None = None
        self.decoder: FrameDecoder | None = None
        self.inflater = InflateStream()  # packed mode's stream
        self.frames = 0
        self.verified = 0
        self.mismatches = 0
        self.keyframes = 0
        self.moves = 0
        self.bytes = 0
        self.frame_bytes = 0
        self.packed_frames = 0  # of ``frames``, those that came as PackedFrames
        self.checksum = 0
        self.started_at: float | None = None  # time Welcome arrived
        self.last_at: float | None = None
        self.closed_by_server = False
        self._input_seq = 0
        self._pending: tuple[int, float] | None = None  # (input seq, time sent)
        self._resync_sent = False
        self._unchanged_answers = 0
        self._owed: tuple[int, float, int] | None = None  # unacked verified: seq, since, count
        self.video_frames = 0  # decoded frames of the video track (video mode)
        self.stop_requested = False

    # -- state the adapter asks about -------------------------------------------------

    @property
    def streaming(self) -> bool:
        return self.welcome is not None

    @property
    def control(self) -> bool:
        return self.welcome is not None and self.welcome.role == "control"

    @property
    def video(self) -> bool:
        return self.options.mode == "video"

    @property
    def has_picture(self) -> bool:
        """A first picture arrived: a Frame, or in video mode a decoded video frame."""
        return self.welcome is not None and (
            self.video_frames > 0 if self.video else self.frames > 0
        )

    @property
    def awaiting_frame(self) -> bool:
        """True while the client waits for something it is owed (first frame, an answer)."""
        return not self.has_picture or self._pending is not None

    def on_video_frame(self, now: float) -> None:
        """A video frame was decoded (the adapter's track reader calls this)."""
        self.video_frames += 1
        self.last_at = now

    def _moves_left(self) -> bool:
        limit = self.options.moves
        return self.control and (limit is None or self.moves < limit)

    def done(self, now: float) -> bool:
        """True once a limit is reached (or the server said Bye, or a stop was asked)."""
        if self.closed_by_server or self.stop_requested:
            return True
        if not self.has_picture:
            return False
        opts = self.options
        shown = self.video_frames if self.video else self.frames
        if opts.frames is not None and shown >= opts.frames:
            return True
        if (
            opts.seconds is not None
            and self.started_at is not None
            and now - self.started_at >= opts.seconds
        ):
            return True
        if self._pending is not None:
            return False
        if opts.moves is not None and not self._moves_left():
            # Moves are done (or this role cannot move): stop unless another limit runs.
            return opts.frames is None and opts.seconds is None
        return False

    # -- protocol ---------------------------------------------------------------------

    def start(self) -> bytes:
        """The Hello to send first."""
        opts = self.options
        return self.conn.send(
            Hello(client=opts.agent, app=opts.app, session=opts.session, mode=opts.mode)
        )

    def receive(self, data: bytes, now: float) -> list[bytes]:
        """Feed one received protocol message; return the messages to send."""
        self.bytes += len(data)
        self.last_at = now
        out: list[bytes] = []
        for message in self.conn.receive_data(data):
            if isinstance(message, Welcome):
                self._on_welcome(message, now)
            elif isinstance(message, Frame | PackedFrame):
                self.frame_bytes += len(data)
                self.packed_frames += isinstance(message, PackedFrame)
                out.extend(self._on_frame(message, len(data), now))
            elif isinstance(message, Error):
                raise error_for(message.code, message.message)
            elif isinstance(message, Bye):
                self.closed_by_server = True
        return out

    def finish(self) -> bytes | None:
        """The Bye to send before closing, or None when the connection is over."""
        if self.closed_by_server:
            return None
        try:
            return self.conn.send(Bye(reason="done"))
        except InvalidState:
            return None

    def _on_welcome(self, welcome: Welcome, now: float) -> None:
        self.welcome = welcome
        self.started_at = now
        self.decoder = FrameDecoder(
            welcome.width, welcome.height, dictionary_slots=welcome.dictionary_slots
        )

    def _tiles(self, frame: Frame | PackedFrame) -> list[Tile]:
        """The frame's tiles; a PackedFrame's come out of the stream (CodecError if bad)."""
        if isinstance(frame, Frame):
            return list(frame.tiles)
        assert self.decoder is not None
        try:
            raw = self.inflater.inflate(frame.data, frame.size, keyframe=frame.keyframe)
            return unpack_tiles(raw, frame.count, self.decoder.grid.count)
        except PayloadTooBig as exc:  # a size limit passed: as broken as a bad byte
            raise CodecError(str(exc)) from None

    def _on_frame(self, frame: Frame | PackedFrame, size: int, now: float) -> list[bytes]:
        assert self.decoder is not None  # the session state machine puts Welcome first
        self.frames += 1
        if self.video and isinstance(frame, Frame):
            return self._on_video_answer(frame, now)
        if frame.keyframe:
            self.keyframes += 1
            self._resync_sent = False
            shape = self.decoder.framebuffer.shape
            if (frame.height, frame.width) != shape[:2]:
                slots = self.welcome.dictionary_slots if self.welcome else 0
                self.decoder = FrameDecoder(frame.width, frame.height, dictionary_slots=slots)
        out: list[bytes] = []
        ok = False
        try:
            self.decoder.apply(self._tiles(frame), keyframe=frame.keyframe)
            if isinstance(frame, PackedFrame):
                self.checksum = self.decoder.table_checksum()
            else:
                self.checksum = self.decoder.checksum()
            ok = self.checksum == frame.checksum
        except CodecError:
            ok = False  # a tile this picture cannot take: same cure as a bad checksum
        if ok:
            self.verified += 1
            since, count = (now, 1) if self._owed is None else (self._owed[1], self._owed[2] + 1)
            self._owed = (frame.seq, since, count)
            if frame.keyframe or count >= ACK_EVERY:
                out.append(self._ack())
            if self.on_frame is not None:
                self.on_frame(self.decoder.framebuffer, size)
        else:
            self.mismatches += 1
            if not self._resync_sent:
                self._resync_sent = True
                out.append(self.conn.send(Resync(reason=f"checksum mismatch at frame {frame.seq}")))
        if self._pending is not None and frame.input_seq >= self._pending[0]:
            self.latency.add((now - self._pending[1]) * 1000.0)
            self.moves += 1
            self._pending = None
            changed = frame.tiles if isinstance(frame, Frame) else frame.count
            self._unchanged_answers = 0 if changed else self._unchanged_answers + 1
        return out

    def _ack(self) -> bytes:
        assert self._owed is not None
        seq = self._owed[0]
        self._owed = None
        return self.conn.send(Ack(seq=seq))

    @property
    def ack_deadline(self) -> float | None:
        """When the owed Ack is due (None: nothing owed)."""
        return None if self._owed is None else self._owed[1] + ACK_DELAY_S

    def due_ack(self, now: float) -> bytes | None:
        """The owed Ack once its deadline passed, else None."""
        deadline = self.ack_deadline
        if deadline is None or now < deadline:
            return None
        try:
            return self._ack()
        except InvalidState:  # the connection ended meanwhile: nothing to acknowledge
            return None

    def _on_video_answer(self, frame: Frame, now: float) -> list[bytes]:
        # The picture is on the track and lossy: nothing to verify; the Frame
        # answers an Input and keeps the server's window moving.
        if self._pending is not None and frame.input_seq >= self._pending[0]:
            self.latency.add((now - self._pending[1]) * 1000.0)
            self.moves += 1
            self._pending = None
        return [self.conn.send(Ack(seq=frame.seq))]

    def next_input(self, now: float) -> bytes | None:
        """The next move to send, when one is due (first picture seen, none pending)."""
        if not self.has_picture or self._pending is not None or not self._moves_left():
            return None
        if self.done(now):
            return None
        self._input_seq += 1
        data = self.conn.send(self._move(self._input_seq))
        self._pending = (self._input_seq, now)
        return data

    def _move(self, seq: int) -> Input:
        welcome = self.welcome
        assert welcome is not None
        if welcome.app == "sand":
            # Sand ignores arrows: pour with the pointer over the upper part of the picture.
            x = self._rng.randrange(welcome.width)
            y = self._rng.randrange(max(1, welcome.height * 3 // 4))
            return Input(seq=seq, kind="pointer", key="", x=x, y=y, buttons=1)
        if welcome.app == VIEWER_APP:
            return Input(seq=seq, kind="key", key=self._rng.choice(PAGE_KEYS), x=0, y=0, buttons=0)
        if welcome.app == "2048" and self._unchanged_answers >= STUCK_ANSWERS:
            self._unchanged_answers = 0
            return Input(seq=seq, kind="key", key="r", x=0, y=0, buttons=0)
        return Input(seq=seq, kind="key", key=self._rng.choice(MOVE_KEYS), x=0, y=0, buttons=0)

    def report(self, now: float) -> dict[str, Any]:
        """The figures of this run (the ``--json`` object)."""
        welcome = self.welcome
        end = self.last_at if self.last_at is not None else now
        seconds = max(0.0, end - self.started_at) if self.started_at is not None else 0.0
        return {
            "transport": self.options.transport,
            "mode": self.options.mode,
            "app": welcome.app if welcome else self.options.app,
            "session": welcome.session if welcome else self.options.session,
            "user": welcome.user if welcome else "",
            "role": welcome.role if welcome else "",
            "frames": self.frames,
            "verified": self.verified,
            "mismatches": self.mismatches,
            "keyframes": self.keyframes,
            "moves": self.moves,
            "latency_ms": self.latency.summary(),
            "bytes": self.bytes,
            "bytes_per_frame": round(self.frame_bytes / self.frames, 1) if self.frames else 0.0,
            "fps": round(self.frames / seconds, 2) if seconds > 0 else 0.0,
            "seconds": round(seconds, 3),
            "width": welcome.width if welcome else 0,
            "height": welcome.height if welcome else 0,
            "checksum": self.checksum,
        }


class Inbox:
    """Inbox entries delivered while connected, once each (delivery is at least once)."""

    __slots__ = ("t0", "entries", "dropped", "_seen")

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.entries: list[dict[str, Any]] = []
        self.dropped = 0
        self._seen: set[str] = set()

    def add(self, entry: dict[str, Any], now: float) -> bool:
        """Keep ``entry`` with ``received_ms``; False for a repeat (same inbox id)."""
        key = entry.get("inbox", entry.get("id"))
        ident = repr(key) if key is not None else repr(sorted(entry.items()))
        if ident in self._seen:
            return False
        if len(self.entries) >= MAX_INBOX:
            self.dropped += 1
            return False
        self._seen.add(ident)
        received = round(max(0.0, now - self.t0) * 1000.0, 1)
        self.entries.append({**entry, "received_ms": received})
        return True


def open_info(entry: dict[str, Any]) -> dict[str, Any]:
    """The report's ``open`` object: what the recipient may know, never the code."""
    return {name: entry.get(name) for name in OPEN_FIELDS}


class HeadlessClient:
    """Connect, play, verify, report: ``report = await HeadlessClient(opts).run()``."""

    def __init__(self, options: ClientOptions, *, on_frame: FrameHook | None = None) -> None:
        self.options = options
        self.on_frame = on_frame
        self.inbox: Inbox | None = None  # live while running: entries delivered so far
        self._player: Player | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False

    def stop(self) -> None:
        """End the run soon, cleanly (Bye, report), whatever limits are left."""
        self._stopping = True
        if self._player is not None:
            self._player.stop_requested = True
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> dict[str, Any]:
        opts = self.options
        async with contextlib.AsyncExitStack() as stack:
            recorder: Recorder | None = None
            if opts.record:
                try:
                    sink = stack.enter_context(open(Path(opts.record), "wb"))  # noqa: SIM115
                except OSError as exc:
                    raise ConfigError(
                        f"cannot write {opts.record}: {exc.strerror or exc}"
                    ) from None
                recorder = Recorder(sink)
            inbox: Inbox | None = None
            api = None
            if opts.open_code or opts.inbox:
                holder: list[Inbox] = []
                api = await self._open_api(recorder, holder)
                if api is not None:
                    stack.push_async_callback(api.close)
                    inbox = self.inbox = Inbox(time.perf_counter())
                    holder.append(inbox)
                    # Items pushed before the Inbox existed (right after connect).
                    while not api.inbox_items.empty():
                        inbox.add(api.inbox_items.get_nowait(), inbox.t0)
            opened: dict[str, Any] | None = None
            if opts.open_code:
                assert api is not None  # _open_api raises when --open cannot reach /api
                entry = await api.redeem(opts.open_code)
                opened = open_info(entry)
                # The code is spent: the stream names the entry, never the code.
                opts = replace(opts, app=VIEWER_APP, session=str(entry["id"]), open_code="")
            player = self._player = Player(opts, on_frame=self.on_frame)
            player.stop_requested = self._stopping
            video = await self._stream(opts, player, recorder)
            report = player.report(time.perf_counter())
        report["video"] = _video_report(video, player) if video is not None else None
        report["open"] = opened
        report["inbox"] = inbox.entries if inbox is not None else None
        return report

    async def _open_api(self, recorder: Recorder | None, holder: list[Inbox]) -> Any:
        """The files API socket, or None when the server has none (and no code needs it)."""
        from simulacra.client.files_api import FilesClient  # websockets only

        opts = self.options

        def pushed(entry: dict[str, Any]) -> None:
            if holder:
                holder[0].add(entry, time.perf_counter())
                # Taken now: keep the client's own queue from growing for the run.
                with contextlib.suppress(asyncio.QueueEmpty):
                    api.inbox_items.get_nowait()

        try:
            api = FilesClient(
                opts.url,
                opts.token,
                timeout=opts.timeout,
                on_inbox=pushed,
                # FilesClient only calls write(): the bounded Recorder stands in for a file.
                record=cast(BinaryIO, recorder),
            )
            await api.connect()
        except (TransportError, Unauthorized, ConfigError):
            if opts.open_code:
                raise
            # A server without /api: no inbox, streaming goes on. A missing or
            # refused token is reported by the stream's own handshake, in its words.
            return None
        return api

    async def _stream(
        self, opts: ClientOptions, player: Player, recorder: Recorder | None
    ) -> VideoStats | None:
        wake = self._wake = asyncio.Event()

        def on_video_frame(now: float) -> None:
            player.on_video_frame(now)
            wake.set()

        transport = await open_transport(
            opts.url,
            opts.token,
            opts.transport,
            timeout=opts.timeout,
            record=recorder,
            video=opts.mode == "video",
            on_video_frame=on_video_frame,
        )
        try:
            await self._play(transport, player, wake)
            bye = player.finish()
            if bye is not None:
                await transport.send(bye)
                if transport.name == "webrtc":
                    # Closing the peer at once could drop the queued Bye; the
                    # server closes the channel when it has read it.
                    await transport.wait_closed(2.0)
        finally:
            await transport.close()
        return transport.video

    async def _play(self, transport: Transport, player: Player, wake: asyncio.Event) -> None:
        opts = self.options
        await transport.send(player.start())
        receiving: asyncio.Task[bytes] | None = None
        try:
            while True:
                # A decoded video frame or stop() may end the run (or allow the
                # first move) while no protocol message comes: they set ``wake``.
                wake.clear()
                now = time.perf_counter()
                if player.done(now):
                    return
                for data in (player.due_ack(now), player.next_input(now)):
                    if data is not None:
                        await transport.send(data)
                timeout = opts.timeout
                if opts.seconds is not None and player.started_at is not None:
                    if player.has_picture:
                        # The clock runs from Welcome, but the first picture is always awaited.
                        left = max(0.0, player.started_at + opts.seconds - now)
                        timeout = min(timeout, left) if player.awaiting_frame else left
                deadline = player.ack_deadline
                ack_wait = None if deadline is None else max(0.0, deadline - now)
                if receiving is None:
                    receiving = asyncio.ensure_future(transport.recv())
                woken = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait(
                        {receiving, woken},
                        timeout=timeout if ack_wait is None else min(timeout, ack_wait),
                        return_when="FIRST_COMPLETED",
                    )
                finally:
                    woken.cancel()
                if receiving.done():
                    data, receiving = receiving.result(), None
                elif wake.is_set() or (ack_wait is not None and ack_wait < timeout):
                    continue  # woken, or the owed Ack is due: the loop's top sends it
                else:
                    data = None
                if data is None:
                    if opts.seconds is not None and player.done(time.perf_counter()):
                        return
                    what = "Welcome" if not player.streaming else "frame"
                    raise TransportError(f"no {what} from the server within {timeout:g} s")
                for reply in player.receive(data, time.perf_counter()):
                    await transport.send(reply)
        finally:
            if receiving is not None:
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError, SimulacraError):
                    await receiving


def _video_report(video: VideoStats, player: Player) -> dict[str, Any]:
    """Video-mode figures: decoded frames, fps since Welcome, RTP payload bytes."""
    end = video.last_at
    start = player.started_at
    seconds = end - start if end is not None and start is not None else 0.0
    return {
        "frames": video.frames,
        "fps": round(video.frames / seconds, 2) if seconds > 0 else 0.0,
        "bytes": video.rtp_bytes,
        "packets": video.rtp_packets,
        "bytes_per_frame": round(video.rtp_bytes / video.frames, 1) if video.frames else 0.0,
        "bytes_source": "rtp payload",
        "width": video.width,
        "height": video.height,
    }
