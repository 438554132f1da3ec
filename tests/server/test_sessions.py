"""AppSession and SessionManager without sockets: a fake app, a recording sink."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
import pytest
from server_testkit import wait_until

from simulacra.apps.base import App, InputEvent
from simulacra.codecs.display import FrameDecoder, FrameEncoder, TileEncodeCache
from simulacra.errors import PayloadTooBig
from simulacra.protocol.messages import Frame, Input, Message
from simulacra.protocol.wire import MAX_MESSAGE_BYTES
from simulacra.server.sessions import (
    AppSession,
    SessionManager,
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
