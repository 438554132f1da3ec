"""AppSession and SessionManager without sockets: a fake app, a recording sink."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_testkit import wait_until

from simulacra.apps.base import App, InputEvent
from simulacra.codecs.display import (
    FrameDecoder,
    FrameEncoder,
    InflateStream,
    TileEncodeCache,
    unpack_tiles,
)
from simulacra.errors import PayloadTooBig
from simulacra.protocol.messages import Frame, Hello, Input, Message, PackedFrame, Welcome
from simulacra.protocol.session import ClientConnection, ServerConnection
from simulacra.protocol.wire import MAX_MESSAGE_BYTES, encode_message
from simulacra.server.sessions import (
    AppSession,
    SessionManager,
    SharedFrame,
    encoder_memory_bound,
    viewer_memory_bound,
)


class Counter(App):
    """State is an int; a key adds one, a tick adds ten; tile 0 shows it as grey."""

    name: ClassVar[str] = "counter"
    title: ClassVar[str] = "counter"
    width: ClassVar[int] = 32
    height: ClassVar[int] = 16
    tick_hz: ClassVar[float] = 0.0

    def reset(self, seed: int) -> int:
        return 0

    def step(self, state: int, event: InputEvent | None) -> int:
        if event is not None and event.key == "boom":
            raise RuntimeError("boom")
        return state + (1 if event is not None else 10)

    def render(self, state: int) -> np.ndarray:
        fb = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        fb[:, :16] = state % 256
        return fb


class Ticker(Counter):
    tick_hz: ClassVar[float] = 200.0


class Sink:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.aborted: tuple[int, str] | None = None
        self.busy = False
        self.decoder = FrameDecoder(Counter.width, Counter.height, dictionary_slots=16)

    def congested(self) -> bool:
        return self.busy

    def send_message(self, msg: Message) -> None:
        assert isinstance(msg, Frame)
        self.decoder.apply(msg.tiles, keyframe=msg.keyframe)
        assert self.decoder.checksum() == msg.checksum
        self.messages.append(msg)

    def abort(self, code: int, message: str) -> None:
        self.aborted = (code, message)

    def buffered(self) -> int:
        return 0

    @property
    def frames(self) -> list[Frame]:
        return [m for m in self.messages if isinstance(m, Frame)]


def make_session(app: App, executor: ThreadPoolExecutor | None = None) -> AppSession:
    session = AppSession(
        ("private", "u", app.name),
        "u/counter",
        app,
        executor=executor,
        cache=TileEncodeCache(64),
        frame_window=2,
        max_pending=8,
        dictionary_slots=16,
        seed=1,
    )
    session.start()
    return session


def key(seq: int, name: str = "k") -> Input:
    return Input(seq=seq, kind="key", key=name)


async def test_window_skips_then_catches_up_on_ack() -> None:
    session = make_session(Counter())
    sink = Sink()
    viewer = session.join(sink, "u", "control")
    await wait_until(lambda: len(sink.frames) == 1, "the keyframe")
    for seq in range(1, 6):
        session.submit_input(viewer, key(seq))
        await wait_until(lambda: viewer.pending == 0, "inputs handled")
    # window 2: the keyframe and one answer; the rest waits for an Ack
    assert [(f.seq, f.keyframe) for f in sink.frames] == [(1, True), (2, False)]
    assert session.version == 5
    session.ack(viewer, 2)
    await wait_until(lambda: len(sink.frames) == 3, "the catch-up frame")
    last = sink.frames[-1]
    assert (last.seq, last.input_seq, last.keyframe) == (3, 5, False)
    assert sink.decoder.framebuffer[0, 0, 0] == 5
    await session.close()


async def test_unchanged_picture_still_answers_input() -> None:
    class Still(Counter):
        def render(self, state: int) -> np.ndarray:
            return np.zeros((self.height, self.width, 3), dtype=np.uint8)

    session = make_session(Still())
    sink = Sink()
    viewer = session.join(sink, "u", "control")
    await wait_until(lambda: len(sink.frames) == 1, "the keyframe")
    session.ack(viewer, 1)
    session.submit_input(viewer, key(7))
    await wait_until(lambda: len(sink.frames) == 2, "the answer")
    assert (sink.frames[1].input_seq, sink.frames[1].tiles) == (7, ())
    await session.close()


async def test_resync_sends_keyframe_and_others_see_inputs() -> None:
    session = make_session(Counter(), ThreadPoolExecutor(1))
    a, b = Sink(), Sink()
    va = session.join(a, "u", "control")
    vb = session.join(b, "v", "view")
    await wait_until(lambda: len(a.frames) == 1 and len(b.frames) == 1, "keyframes")
    session.ack(va, 1)
    session.ack(vb, 1)
    session.submit_input(va, key(1))
    await wait_until(lambda: len(a.frames) == 2 and len(b.frames) == 2, "fan-out")
    assert (a.frames[1].input_seq, b.frames[1].input_seq) == (1, 0)
    session.resync(vb)
    await wait_until(lambda: len(b.frames) == 3, "the resync keyframe")
    assert b.frames[2].keyframe and len(b.frames[2].tiles) == 2
    assert len(a.frames) == 2
    await session.close()


async def test_congested_viewer_is_skipped_then_retried() -> None:
    session = make_session(Counter())
    sink = Sink()
    sink.busy = True
    session.join(sink, "u", "control")
    await wait_until(lambda: session.version == 0 and sink.busy, "the first render")
    await asyncio.sleep(0)  # let the loop pass at least once while congested
    assert sink.frames == []
    sink.busy = False
    await wait_until(lambda: len(sink.frames) == 1, "the retried keyframe")
    await session.close()


async def test_tick_app_advances_while_watched() -> None:
    session = make_session(Ticker())
    sink = Sink()
    viewer = session.join(sink, "u", "control")
    # No input at all: ticks alone make frames; each Ack opens the window again.
    await wait_until(lambda: len(sink.frames) >= 2, "the window to fill")
    session.ack(viewer, sink.frames[-1].seq)
    await wait_until(lambda: len(sink.frames) >= 4, "more ticks")
    assert [f.input_seq for f in sink.frames] == [0] * len(sink.frames)
    assert sink.frames[0].keyframe and not sink.frames[-1].keyframe
    session.leave(viewer)
    await wait_until(lambda: not session.viewers, "the viewer to leave")
    await session.close()


async def test_too_many_pending_messages() -> None:
    session = make_session(Counter())
    viewer = session.join(Sink(), "u", "control")
    with pytest.raises(PayloadTooBig):
        for seq in range(1, 20):  # no await: the loop never gets to run
            session.submit_input(viewer, key(seq))
    await session.close()


async def test_app_failure_aborts_viewers() -> None:
    session = make_session(Counter())
    sink = Sink()
    viewer = session.join(sink, "u", "control")
    session.submit_input(viewer, key(1, "boom"))
    await wait_until(lambda: session.closed.is_set(), "the session to fail")
    assert sink.aborted == (500, "session u/counter failed: RuntimeError")


async def test_manager_keys_and_eviction() -> None:
    assert SessionManager.key_for("ann", "2048", "") == (("private", "ann", "2048"), "ann/2048")
    assert SessionManager.key_for("ann", "2048", "party") == (("shared", "2048", "party"), "party")
    manager = SessionManager(make_app=lambda name: Counter(), executor=None, max_sessions=2)
    first = manager.get("ann", "counter", "")
    assert manager.get("ann", "counter", "") is first
    manager.get("bob", "counter", "")
    manager.get("cat", "counter", "")  # evicts ann's idle session, the oldest
    assert sorted(k[1] for k in manager.sessions) == ["bob", "cat"]
    await wait_until(lambda: first.closed.is_set(), "the evicted session to stop")
    assert manager.viewer_count == 0
    await manager.close()


async def test_step_inputs_in_order() -> None:
    class Log(Counter):
        def step(self, state: Any, event: InputEvent | None) -> Any:
            return state * 10 + int(event.key) if event is not None else state

    session = make_session(Log(), ThreadPoolExecutor(2))
    sink = Sink()
    viewer = session.join(sink, "u", "control")
    for seq, digit in enumerate("123", start=1):
        session.submit_input(viewer, key(seq, digit))
    await wait_until(lambda: session.version >= 0 and viewer.applied_input == 3, "inputs")
    assert session._state == 123  # noqa: SLF001
    await session.close()


def test_viewer_memory_bound_covers_a_full_dictionary() -> None:
    width = height = 256  # 256 tiles a frame: 17 random frames fill 4096 slots and evict
    slots = 4096
    bound = encoder_memory_bound(width, height, dictionary_slots=slots)
    assert (
        viewer_memory_bound(width, height, dictionary_slots=slots, max_send_buffer=1000)
        == bound + 1000 + MAX_MESSAGE_BYTES + 64 * 1024
    )
    encoder = FrameEncoder(width, height, dictionary_slots=slots, cache=TileEncodeCache(16))
    rng = np.random.default_rng(0)
    for _ in range(17):
        # Random 2-colour tiles: all distinct, cheap to encode (palette + runs).
        fb = rng.integers(0, 2, size=(height, width, 1), dtype=np.uint8) * 255
        encoder.encode(np.repeat(fb, 3, axis=2))
        assert encoder.nbytes <= bound
    assert encoder.dictionary.lru.filled == slots


async def test_redraw_renders_again_and_viewers_get_the_change() -> None:
    class Shaded(Counter):
        shade = 0  # stands in for an emulator answering differently after a patch

        def render(self, state: int) -> np.ndarray:
            fb = super().render(state)
            fb[:, 16:] = self.shade
            return fb

    app = Shaded()
    session = make_session(app)
    sink = Sink()
    viewer = session.join(sink, "u", "control")
    await wait_until(lambda: len(sink.frames) == 1, "the keyframe")
    session.ack(viewer, 1)
    app.shade = 200
    session.redraw()
    await wait_until(lambda: len(sink.frames) == 2, "the redrawn frame")
    assert (sink.frames[1].input_seq, [t[0] for t in sink.frames[1].tiles]) == (0, [1])
    assert sink.decoder.framebuffer[0, 16, 0] == 200
    await session.close()


@settings(max_examples=60, deadline=None)
@given(
    seq=st.integers(1, 2**53 - 1),
    input_seq=st.integers(0, 2**53 - 1),
    lead=st.tuples(st.integers(1, 2**53 - 1), st.integers(0, 2**53 - 1)),
    keyframe=st.booleans(),
    checksum=st.integers(0, 2**32 - 1),
    tiles=st.lists(
        st.tuples(st.integers(0, 11), st.integers(0, 4), st.binary(max_size=300)), max_size=20
    ),
)
def test_shared_frame_splices_exactly_what_encode_message_writes(
    seq: int,
    input_seq: int,
    lead: tuple[int, int],
    keyframe: bool,
    checksum: int,
    tiles: list[tuple[int, int, bytes]],
) -> None:
    template = Frame(lead[0], lead[1], keyframe, 64, 48, tuple(tiles), checksum)
    shared = SharedFrame.of(template)
    header = shared.header(seq, input_seq)
    assert header.tiles == () and (header.seq, header.input_seq) == (seq, input_seq)
    mine = Frame(seq, input_seq, keyframe, 64, 48, tuple(tiles), checksum)
    assert shared.wire(encode_message(header)) == encode_message(mine)
    assert shared.frame_for(seq, input_seq) == mine
    assert shared.data == encode_message(template)


@settings(max_examples=60, deadline=None)
@given(
    seq=st.integers(1, 2**53 - 1),
    input_seq=st.integers(0, 2**53 - 1),
    keyframe=st.booleans(),
    checksum=st.integers(0, 2**32 - 1),
    count=st.integers(0, 12),
    data=st.binary(max_size=70_000),
)
def test_shared_packed_frame_splices_exactly(
    seq: int, input_seq: int, keyframe: bool, checksum: int, count: int, data: bytes
) -> None:
    size = 0 if count == 0 else 1 + len(data)
    template = PackedFrame(1, 0, keyframe, 64, 48, count, size, data, checksum)
    shared = SharedFrame.of(template)
    header = shared.header(seq, input_seq)
    assert isinstance(header, PackedFrame) and header.data == b""
    mine = PackedFrame(seq, input_seq, keyframe, 64, 48, count, size, data, checksum)
    assert shared.wire(encode_message(header)) == encode_message(mine)
    assert shared.frame_for(seq, input_seq) == mine


class Noise(App):
    """64x48 (12 tiles); each key or tick repaints a few tiles from a seeded generator."""

    name: ClassVar[str] = "noise"
    title: ClassVar[str] = "noise"
    width: ClassVar[int] = 64
    height: ClassVar[int] = 48

    def reset(self, seed: int) -> int:
        return seed

    def step(self, state: int, event: InputEvent | None) -> int:
        return state + 1

    def render(self, state: int) -> np.ndarray:
        rng = np.random.default_rng(state % 5)  # pictures recur: dictionary REFs happen
        fb = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        for index in rng.choice(12, size=4, replace=False):
            row, col = divmod(int(index), 4)
            fb[row * 16 : row * 16 + 16, col * 16 : col * 16 + 16] = rng.integers(
                0, 4, (16, 16, 3), dtype=np.uint8
            ) * (state % 7 + 1)
        return fb


class WireSink:
    """A viewer's connection down to the bytes: server state machine, wire, client decoder."""

    def __init__(self, mode: str = "tiles") -> None:
        self.server = ServerConnection()
        self.client = ClientConnection()
        self.inflater = InflateStream()
        self.hello_mode = mode
        hello = self.client.send(Hello("t/0", "noise", "s", mode))
        self.server.receive_data(hello)
        welcome = Welcome("s", "u", "view", "noise", Noise.width, Noise.height, 16, 8, ("noise",))
        self.client.receive_data(self.server.send(welcome))
        self.decoder = FrameDecoder(Noise.width, Noise.height, dictionary_slots=8)
        self.frames: list[Frame | PackedFrame] = []
        self.mismatches = 0

    def congested(self) -> bool:
        return False

    def buffered(self) -> int:
        return 0

    def abort(self, code: int, message: str) -> None:
        raise AssertionError(f"aborted: {code} {message}")

    def send_message(self, msg: Message) -> None:
        self._receive(self.server.send(msg))

    def send_frame(self, shared: SharedFrame, seq: int, input_seq: int) -> None:
        self._receive(shared.wire(self.server.send(shared.header(seq, input_seq))))

    def _receive(self, data: bytes) -> None:
        (frame,) = self.client.receive_data(data)
        if isinstance(frame, PackedFrame):
            raw = self.inflater.inflate(frame.data, frame.size, keyframe=frame.keyframe)
            tiles = unpack_tiles(raw, frame.count, self.decoder.grid.count)
        else:
            assert isinstance(frame, Frame)
            tiles = list(frame.tiles)
        self.decoder.apply(tiles, keyframe=frame.keyframe)
        if isinstance(frame, PackedFrame):  # packed mode: the tile-table checksum
            self.mismatches += self.decoder.table_checksum() != frame.checksum
        else:
            self.mismatches += self.decoder.checksum() != frame.checksum
        self.frames.append(frame)


def noise_session(
    window: int = 4, regroup_interval: float = 10.0, regroup_budget: float = 1.0
) -> AppSession:
    session = AppSession(
        ("shared", "noise", "s"),
        "s",
        Noise(),
        executor=None,
        cache=TileEncodeCache(256),
        frame_window=window,
        max_pending=64,
        dictionary_slots=8,
        seed=3,
        regroup_interval=regroup_interval,
        regroup_budget=regroup_budget,
    )
    session.start()
    return session


async def test_in_sync_viewers_share_one_encode_and_all_verify() -> None:
    session = noise_session()
    sinks = [WireSink() for _ in range(6)]
    # Joined in one batch: one keyframe pass, one group.
    viewers = [
        session.join(s, f"u{i}", "control" if i == 0 else "view") for i, s in enumerate(sinks)
    ]
    await wait_until(lambda: all(len(s.frames) == 1 for s in sinks), "the keyframes")
    for seq in range(1, 13):
        for v, s in zip(viewers, sinks, strict=True):
            session.ack(v, s.frames[-1].seq)
        sinks[0].client.send(key(seq))  # the Input the server's state machine answers
        sinks[0].server.receive_data(encode_message(key(seq)))
        session.submit_input(viewers[0], key(seq))
        await wait_until(lambda n=seq + 1: all(len(s.frames) == n for s in sinks), "the fan-out")
    assert sum(s.mismatches for s in sinks) == 0
    assert [len(s.frames) for s in sinks] == [13] * 6
    assert len(session.groups) == 1 and len(session.groups[0].members) == 6
    assert session.framebuffer is not None
    for s in sinks:
        assert (s.decoder.framebuffer == session.framebuffer).all()
        # Same tiles for everyone; only the controller's frames answer its inputs.
        assert [f.tiles for f in s.frames] == [f.tiles for f in sinks[0].frames]
    assert [f.input_seq for f in sinks[1].frames] == [0] * 13
    assert [f.input_seq for f in sinks[0].frames] == list(range(13))
    # One encode per picture (the keyframe included), not one per viewer and picture.
    assert session.stats.encodes <= 13 and session.stats.frames == 6 * 13
    assert session.stats.forks == 0
    await session.close()


async def test_a_skipping_viewer_forks_verifies_and_rejoins_at_a_keyframe() -> None:
    session = noise_session(window=2)
    sinks = [WireSink() for _ in range(3)]
    a, b, c = (session.join(s, f"u{i}", "view") for i, s in enumerate(sinks))
    await wait_until(lambda: all(len(s.frames) == 1 for s in sinks), "the keyframes")

    async def redraw_and_ack(ackers: tuple[Any, ...], frames: int) -> None:
        session.redraw()
        await wait_until(lambda: all(len(s.frames) == frames for s in sinks[:2]), "a frame")
        for v, s in zip((a, b, c), sinks, strict=True):
            if v in ackers:
                session.ack(v, s.frames[-1].seq)

    session._state += 1  # noqa: SLF001  (a redraw shows the next picture)
    await redraw_and_ack((a, b), 2)  # c got frame 2 too: its window (2) is now full
    for frames in range(3, 6):
        session._state += 1  # noqa: SLF001
        await redraw_and_ack((a, b), frames)
    assert len(sinks[2].frames) == 2 and session.stats.forks == 1
    forked = c.group
    assert forked is not None and forked.members == [c] and forked is not a.group
    assert c.nbytes <= encoder_memory_bound(Noise.width, Noise.height, dictionary_slots=8)
    # c catches up from what it holds, in its own group, and verifies.
    session.ack(c, 2)
    await wait_until(lambda: len(sinks[2].frames) == 3, "c's catch-up")
    assert not sinks[2].frames[-1].keyframe
    assert (sinks[2].decoder.framebuffer == session.framebuffer).all()
    # A Resync and a new joiner in the same pass: one keyframe encode, one new group.
    late = WireSink()
    session.resync(c)
    d = session.join(late, "late", "view")
    await wait_until(lambda: len(sinks[2].frames) == 4 and len(late.frames) == 1, "keyframes")
    assert sinks[2].frames[-1].keyframe and late.frames[-1].keyframe
    assert c.group is d.group and c.group is not None and c.group.members == [c, d]
    assert sum(s.mismatches for s in (*sinks, late)) == 0
    assert len(session.groups) == 2
    await session.close()


async def test_packed_viewers_share_one_stream_and_a_fork_copies_it() -> None:
    session = noise_session(window=2)
    sinks = [WireSink("packed"), WireSink("packed"), WireSink("packed"), WireSink("tiles")]
    viewers = [session.join(s, f"u{i}", "view", s.hello_mode) for i, s in enumerate(sinks)]
    a, b, c, t = viewers
    await wait_until(lambda: all(len(s.frames) == 1 for s in sinks), "the keyframes")
    assert len(session.groups) == 1 and session.groups[0].stream is not None

    async def picture(ackers: tuple[Any, ...], getting: tuple[Any, ...]) -> None:
        counts = [len(s.frames) for s in sinks]
        session._state += 1  # noqa: SLF001  (a redraw shows the next picture)
        session.redraw()
        await wait_until(
            lambda: all(
                len(s.frames) == n + 1
                for v, s, n in zip(viewers, sinks, counts, strict=True)
                if v in getting
            ),
            "a frame",
        )
        for v, s in zip(viewers, sinks, strict=True):
            if v in ackers:
                session.ack(v, s.frames[-1].seq)

    for v, s in zip(viewers, sinks, strict=True):
        session.ack(v, s.frames[-1].seq)
    await picture((a, b, t), viewers)  # c's window (2) is full after this one
    for _ in range(3):
        await picture((a, b, t), (a, b, t))
    assert session.stats.forks == 1 and c.group is not a.group
    assert c.group is not None and c.group.stream is not None
    bound = encoder_memory_bound(Noise.width, Noise.height, dictionary_slots=8)
    assert c.group.encoder.nbytes + c.group.stream.nbytes == c.nbytes <= bound
    held = len(sinks[2].frames)  # the keyframe and the two frames its window let through
    assert held == 3
    session.ack(c, sinks[2].frames[-1].seq)
    await wait_until(lambda: len(sinks[2].frames) == 4, "c's catch-up from its copied stream")
    assert not sinks[2].frames[-1].keyframe
    for s in sinks:
        assert (s.decoder.framebuffer == session.framebuffer).all()
    assert sum(s.mismatches for s in sinks) == 0
    # In-step packed viewers get the same stream bytes; the tiles viewer gets Frames.
    assert [f.data for f in sinks[0].frames] == [f.data for f in sinks[1].frames]  # type: ignore[union-attr]
    assert all(isinstance(f, PackedFrame) for s in sinks[:3] for f in s.frames)
    assert all(isinstance(f, Frame) for f in sinks[3].frames)
    await session.close()


@pytest.mark.parametrize("budget", [1.0, 0.0])
async def test_groups_that_keep_up_again_are_merged_with_one_keyframe(budget: float) -> None:
    session = noise_session(window=2, regroup_interval=0.0, regroup_budget=budget)
    sinks = [WireSink() for _ in range(4)]
    a, b, c, d = viewers = [session.join(s, f"u{i}", "view") for i, s in enumerate(sinks)]
    await wait_until(lambda: all(len(s.frames) == 1 for s in sinks), "the keyframes")

    def ack(*which: Any) -> None:
        for v, s in zip(viewers, sinks, strict=True):
            if v in which:
                session.ack(v, s.frames[-1].seq)

    async def next_picture(*getting: Any) -> None:
        counts = {id(v): len(s.frames) for v, s in zip(viewers, sinks, strict=True)}
        session._state += 1  # noqa: SLF001  (a redraw shows the next picture)
        session.redraw()
        await wait_until(
            lambda: all(
                len(s.frames) == counts[id(v)] + 1
                for v, s in zip(viewers, sinks, strict=True)
                if v in getting
            ),
            "the frame",
        )

    await next_picture(a, b, c, d)
    ack(a, b, d)  # c's window (2) stays full
    await next_picture(a, b, d)  # c forks off
    ack(a, b)
    await next_picture(a, b, d)  # now d's window is full
    ack(a, b)
    await next_picture(a, b)  # d forks off
    assert session.stats.forks == 2 and len(session.groups) == 3
    ack(c, d)  # both catch up at once, each from what it holds
    await wait_until(lambda: len(sinks[2].frames) == 3 and len(sinks[3].frames) == 5, "catch-ups")
    ack(a, b, c, d)
    await next_picture(a, b, c, d)  # three groups keep up: c and d are merged by a keyframe
    stats = session.stats
    if budget == 0.0:  # ...unless the keyframes would cost more than the byte budget
        assert stats.regroups == 0 and stats.regroup_bytes == 0
        assert not any(s.frames[-1].keyframe for s in sinks) and len(session.groups) == 3
    else:
        assert stats.regroups == 1
        assert [s.frames[-1].keyframe for s in sinks] == [False, False, True, True]
        assert c.group is d.group and a.group is b.group and len(session.groups) == 2
        # The estimate: two viewers re-keyed at the size of the latest keyframe.
        assert 0 < stats.regroup_bytes <= budget * stats.frame_bytes
    for _ in range(2):  # the two groups left keep up: nobody is re-keyed again
        ack(a, b, c, d)
        await next_picture(a, b, c, d)
        assert not any(s.frames[-1].keyframe for s in sinks)
    assert stats.regroups == (0 if budget == 0.0 else 1)
    assert stats.frame_bytes == sum(len(encode_message(f)) for s in sinks for f in s.frames)
    assert sum(s.mismatches for s in sinks) == 0
    for s in sinks:
        assert (s.decoder.framebuffer == session.framebuffer).all()
    await session.close()


# One pass of the session loop, driven by hand: what happens to which viewer is drawn.
_STEP = st.tuples(
    st.booleans(),  # a new picture (a redraw of the next state)
    st.lists(st.integers(0, 7), max_size=8),  # viewers that acknowledge all they got
    st.integers(-1, 7),  # a viewer that asks for a Resync (-1: none)
    st.booleans(),  # a new viewer joins
)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(_STEP, min_size=1, max_size=25), first=st.integers(1, 4))
def test_any_skips_and_resyncs_keep_every_group_in_one_state(
    steps: list[tuple[bool, list[int], int, bool]], first: int
) -> None:
    async def scenario() -> None:
        session = AppSession(
            ("shared", "noise", "p"),
            "p",
            Noise(),
            executor=None,
            cache=TileEncodeCache(256),
            frame_window=2,
            max_pending=64,
            dictionary_slots=8,
            seed=5,
            regroup_interval=0.0,
        )
        session._reset()  # noqa: SLF001  (the loop is driven by hand, never started)
        sinks: list[WireSink] = []
        viewers: list[Any] = []

        def join() -> None:
            sinks.append(WireSink())
            viewers.append(session.join(sinks[-1], f"u{len(sinks)}", "view"))

        async def one_pass(fresh: bool) -> None:
            batch = []
            while not session._events.empty():  # noqa: SLF001
                batch.append(session._events.get_nowait())  # noqa: SLF001
            session._apply_events(batch)  # noqa: SLF001
            if fresh:
                session._state += 1  # noqa: SLF001
                session._advance([], False)  # noqa: SLF001
            await session._fan_out(fresh)  # noqa: SLF001

        for _ in range(first):
            join()
        await one_pass(False)
        for picture, ackers, resync, newcomer in steps:
            for i in ackers:
                if i < len(viewers) and sinks[i].frames:
                    session.ack(viewers[i], sinks[i].frames[-1].seq)
            if 0 <= resync < len(viewers):
                session.resync(viewers[resync])
            if newcomer:
                join()
            await one_pass(picture)
            # Viewers of one group hold one state: picture and dictionary, slot for slot.
            for group in session.groups:
                held = [sinks[viewers.index(m)].decoder for m in group.members]
                for decoder in held[1:]:
                    assert (decoder.framebuffer == held[0].framebuffer).all()
                    assert decoder.dictionary.lru.order() == held[0].dictionary.lru.order()
                    filled = held[0].dictionary.lru.filled
                    assert (
                        decoder.dictionary.pixels[:filled] == held[0].dictionary.pixels[:filled]
                    ).all()
            assert sorted(id(m) for g in session.groups for m in g.members) == sorted(
                id(v) for v in viewers if v.group is not None
            )
        # Everyone acknowledges: every viewer catches up to the session's picture.
        for v, s in zip(viewers, sinks, strict=True):
            session.ack(v, s.frames[-1].seq)
        await one_pass(True)
        assert sum(s.mismatches for s in sinks) == 0
        for s in sinks:
            assert (s.decoder.framebuffer == session.framebuffer).all()
        assert session.stats.encodes <= session.stats.frames

    asyncio.run(scenario())
