"""The sans-I/O Player against a ServerConnection + FrameEncoder: no sockets, a fake clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from simulacra.client.headless import (
    ACK_DELAY_S,
    MOVE_KEYS,
    OPEN_FIELDS,
    PAGE_KEYS,
    VIEWER_APP,
    ClientOptions,
    HeadlessClient,
    Inbox,
    Player,
    error_for,
    open_info,
)
from simulacra.codecs.display import (
    DeflateStream,
    FrameEncoder,
    framebuffer_checksum,
    pack_tiles,
    tile_table_checksum,
)
from simulacra.errors import (
    ConfigError,
    Forbidden,
    InvalidState,
    NotFound,
    TransportError,
)
from simulacra.protocol.messages import (
    Ack,
    Bye,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Input,
    PackedFrame,
    Resync,
    Welcome,
)
from simulacra.protocol.session import ServerConnection, State
from simulacra.protocol.wire import decode_message
from simulacra.server import Server
from simulacra.server.config import ServerConfig

W, H = 64, 32


class FakeServer:
    """Answers Hello with Welcome + keyframe and every Input with a frame (in the Hello's mode)."""

    def __init__(
        self,
        *,
        role: str = "control",
        corrupt: set[int] | None = None,
        stuck: bool = False,
        garble: set[int] | None = None,
    ) -> None:
        self.conn = ServerConnection()
        self.role = role
        self.encoder = FrameEncoder(W, H, dictionary_slots=8)
        self.fb = np.zeros((H, W, 3), dtype=np.uint8)
        self.seq = 0
        self.corrupt = corrupt or set()  # frame seqs sent with a wrong checksum
        self.garble = garble or set()  # packed frame seqs sent with a flipped stream byte
        self.stuck = stuck  # inputs change nothing on screen
        self.inputs: list[Input] = []
        self.acks: list[int] = []
        self.resyncs: list[str] = []
        self.byes = 0
        self.mode = "tiles"
        self.stream = DeflateStream()

    def frame(self, *, keyframe: bool = False) -> bytes:
        self.seq += 1
        tiles = tuple(self.encoder.encode(self.fb, keyframe=keyframe))
        checksum = self.checksum()
        if self.seq in self.corrupt:
            checksum ^= 1
        if self.mode == "packed":
            raw = pack_tiles(tiles)
            data = self.stream.compress(raw, keyframe=keyframe)
            if self.seq in self.garble:
                data = data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:]
            return self.conn.send(
                PackedFrame(
                    self.seq,
                    self.conn.last_input_seq,
                    keyframe,
                    W,
                    H,
                    len(tiles),
                    len(raw),
                    data,
                    checksum,
                )  # fmt: skip
            )
        return self.conn.send(
            Frame(
                seq=self.seq,
                input_seq=self.conn.last_input_seq,
                keyframe=keyframe,
                width=W,
                height=H,
                tiles=tiles,
                checksum=checksum,
            )
        )

    def checksum(self) -> int:
        """What a frame of this mode carries now: packed mode has the tile-table checksum."""
        if self.mode == "packed":
            return tile_table_checksum(self.fb)
        return framebuffer_checksum(self.fb)

    def handle(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        for msg in self.conn.receive_data(data):
            if isinstance(msg, Hello):
                self.mode = msg.mode
                welcome = Welcome(
                    session="s1",
                    user="alice",
                    role=self.role,
                    app=msg.app or "2048",
                    width=W,
                    height=H,
                    tile_size=16,
                    dictionary_slots=8,
                    apps=("2048", "sand"),
                )
                out += [self.conn.send(welcome), self.frame(keyframe=True)]
            elif isinstance(msg, Input):
                self.inputs.append(msg)
                if not self.stuck:
                    # Paint one tile per input so frames carry real deltas.
                    col = len(self.inputs) % (W // 16)
                    self.fb[:16, col * 16 : col * 16 + 16] = (len(self.inputs) * 37) % 256
                out.append(self.frame())
            elif isinstance(msg, Ack):
                self.acks.append(msg.seq)
            elif isinstance(msg, Resync):
                self.resyncs.append(msg.reason)
                out.append(self.frame(keyframe=True))
            elif isinstance(msg, Bye):
                self.byes += 1
        return out


def play(player: Player, server: FakeServer, *, step_ms: float = 2.0, limit: int = 1000) -> float:
    """Run the player against the server on a fake clock; every hop takes ``step_ms``."""
    now = 100.0
    inbox = server.handle(player.start())
    for _ in range(limit):
        now += step_ms / 1000.0
        if player.done(now):
            break
        outgoing: list[bytes] = []
        for data in (player.due_ack(now), player.next_input(now)):
            if data is not None:
                outgoing.append(data)
        if inbox:
            outgoing += player.receive(inbox.pop(0), now)
        for item in outgoing:
            inbox += server.handle(item)
    else:
        raise AssertionError("player never finished")
    bye = player.finish()
    if bye is not None:
        server.handle(bye)
    return now


def test_plays_moves_and_verifies_every_frame() -> None:
    player = Player(ClientOptions("http://x", "t", moves=60))
    server = FakeServer()
    play(player, server)
    assert [i.seq for i in server.inputs] == list(range(1, 61))
    # Acks are cumulative: the keyframe at once, then every other frame (61 frames).
    assert server.acks == [1, *range(3, 62, 2)]
    assert server.byes == 1
    assert player.conn.state is State.CLOSED
    report = player.report(0.0)
    assert report["frames"] == 61
    assert report["verified"] == 61
    assert report["mismatches"] == 0
    assert report["keyframes"] == 1
    assert report["moves"] == 60
    assert report["latency_ms"]["count"] == 60
    assert report["checksum"] == server.checksum()
    assert (player.decoder is not None) and np.array_equal(player.decoder.framebuffer, server.fb)
    assert {i.key for i in server.inputs} == set(MOVE_KEYS)


def test_a_lone_frame_is_acknowledged_within_the_ack_delay() -> None:
    player = Player(ClientOptions("http://x", "t", moves=3))
    server = FakeServer()
    (welcome, key) = server.handle(player.start())
    assert player.receive(welcome, 1.0) == []
    (ack,) = player.receive(key, 1.0)  # a keyframe: acknowledged at once
    server.handle(ack)
    (answer,) = server.handle(player.next_input(1.0) or b"")
    assert player.receive(answer, 1.01) == []  # one frame owed: the Ack waits
    assert player.ack_deadline == pytest.approx(1.01 + ACK_DELAY_S)
    assert player.due_ack(1.01 + ACK_DELAY_S / 2) is None
    late = player.due_ack(1.01 + ACK_DELAY_S)
    assert late is not None and player.ack_deadline is None
    server.handle(late)
    assert server.acks == [1, 2]


def test_tiles_mode_plays_on_plain_frames() -> None:
    player = Player(ClientOptions("http://x", "t", moves=20, mode="tiles"))
    server = FakeServer()
    sent: list[bytes] = []
    handle = server.handle

    def spy(data: bytes) -> list[bytes]:
        out = handle(data)
        sent.extend(out)
        return out

    server.handle = spy  # type: ignore[method-assign]
    play(player, server)
    assert server.mode == "tiles"
    kinds = {type(decode_message(m)).__name__ for m in sent}
    assert "Frame" in kinds and "PackedFrame" not in kinds
    assert player.report(0.0)["verified"] == 21
    assert (player.decoder is not None) and np.array_equal(player.decoder.framebuffer, server.fb)


def test_packed_mode_is_the_default() -> None:
    player = Player(ClientOptions("http://x", "t", moves=20))
    server = FakeServer()
    play(player, server)
    assert server.mode == "packed"
    assert player.report(0.0)["verified"] == 21 == player.packed_frames
    assert (player.decoder is not None) and np.array_equal(player.decoder.framebuffer, server.fb)


def test_broken_packed_stream_resyncs_and_recovers() -> None:
    player = Player(ClientOptions("http://x", "t", moves=6))
    server = FakeServer(garble={3})
    play(player, server)
    report = player.report(0.0)
    assert len(server.resyncs) == 1
    assert report["keyframes"] == 2
    assert report["mismatches"] >= 1
    assert (player.decoder is not None) and np.array_equal(player.decoder.framebuffer, server.fb)


def test_latency_from_the_clock() -> None:
    player = Player(ClientOptions("http://x", "t", moves=5))
    play(player, FakeServer(), step_ms=2.0)
    # Input goes out at step k, its frame is read at step k+1: one step each.
    assert player.latency.summary() == {"p50": 2.0, "p99": 2.0, "mean": 2.0, "max": 2.0, "count": 5}


def test_report_fields() -> None:
    player = Player(ClientOptions("http://x", "t", transport="ws", moves=2, app="2048"))
    server = FakeServer()
    play(player, server)
    report = player.report(0.0)
    assert set(report) == {
        "transport", "mode", "app", "session", "user", "role", "frames", "verified",
        "mismatches", "keyframes", "moves", "latency_ms", "bytes", "bytes_per_frame", "fps",
        "seconds", "width", "height", "checksum",
    }  # fmt: skip
    assert (report["transport"], report["mode"]) == ("ws", "packed")
    assert (report["app"], report["session"]) == ("2048", "s1")
    assert (report["user"], report["role"], report["width"], report["height"]) == (
        "alice", "control", W, H,
    )  # fmt: skip
    assert report["bytes"] == player.bytes > player.frame_bytes > 0
    assert report["bytes_per_frame"] == round(player.frame_bytes / 3, 1)
    assert report["seconds"] > 0 and report["fps"] > 0


def test_frame_hook_sees_every_verified_picture() -> None:
    seen: list[tuple[int, int]] = []
    player = Player(
        ClientOptions("http://x", "t", moves=3),
        on_frame=lambda picture, size: seen.append((framebuffer_checksum(picture), size)),
    )
    server = FakeServer(corrupt={2})
    play(player, server)
    assert len(seen) == player.verified == player.frames - 1
    assert seen[-1][0] == framebuffer_checksum(server.fb)
    assert all(size > 0 for _, size in seen)


def test_sand_moves_pour_with_the_pointer() -> None:
    player = Player(ClientOptions("http://x", "t", moves=20, app="sand"))
    server = FakeServer()
    play(player, server)
    assert len(server.inputs) == 20
    for move in server.inputs:
        assert (move.kind, move.key, move.buttons) == ("pointer", "", 1)
        assert 0 <= move.x < W and 0 <= move.y < H * 3 // 4


def test_stuck_2048_restarts_the_game() -> None:
    player = Player(ClientOptions("http://x", "t", moves=20))
    server = FakeServer(stuck=True)
    play(player, server)
    keys = [move.key for move in server.inputs]
    assert [i for i, key in enumerate(keys) if key == "r"] == [8, 16]
    assert set(keys) - {"r"} <= set(MOVE_KEYS)


def test_move_pattern_is_seeded() -> None:
    keys = []
    for seed in (7, 7, 8):
        server = FakeServer()
        play(Player(ClientOptions("http://x", "t", moves=20, seed=seed)), server)
        keys.append([i.key for i in server.inputs])
    assert keys[0] == keys[1]
    assert keys[0] != keys[2]


def test_mismatch_sends_resync_and_recovers() -> None:
    player = Player(ClientOptions("http://x", "t", moves=6))
    server = FakeServer(corrupt={3})
    play(player, server)
    report = player.report(0.0)
    assert report["mismatches"] == 1
    assert server.resyncs == ["checksum mismatch at frame 3"]
    assert report["keyframes"] == 2
    assert report["verified"] == report["frames"] - 1
    assert 3 not in server.acks
    assert report["checksum"] == server.checksum()


def test_one_resync_until_a_keyframe_arrives() -> None:
    player = Player(ClientOptions("http://x", "t", moves=None, frames=100))
    server = FakeServer(corrupt={2, 3})
    for data in server.handle(player.start()):
        player.receive(data, 0.0)
    replies: list[bytes] = []
    for shade in (50, 60):  # two bad deltas in a row
        server.fb[:16, :16] = shade
        replies += player.receive(server.frame(), 0.0)
    assert [decode_message(r) for r in replies] == [Resync("checksum mismatch at frame 2")]
    assert player.mismatches == 2
    replies = player.receive(server.frame(keyframe=True), 0.0)
    assert [decode_message(r) for r in replies] == [Ack(4)]
    assert player.verified == 2


def test_frames_limit() -> None:
    player = Player(ClientOptions("http://x", "t", moves=None, frames=10))
    server = FakeServer()
    play(player, server)
    assert player.frames == 10
    assert len(server.inputs) == 9


def test_viewer_sends_no_input() -> None:
    player = Player(ClientOptions("http://x", "t", moves=5))
    server = FakeServer(role="view")
    play(player, server)
    assert server.inputs == []
    assert player.report(0.0)["role"] == "view"
    assert player.frames == 1


def test_watch_only_with_zero_moves() -> None:
    player = Player(ClientOptions("http://x", "t", moves=0))
    server = FakeServer()
    play(player, server)
    assert server.inputs == [] and player.frames == 1


def test_seconds_limit_counts_from_welcome() -> None:
    player = Player(ClientOptions("http://x", "t", moves=None, seconds=0.05))
    play(player, FakeServer(), step_ms=2.0)
    assert player.started_at is not None and player.last_at is not None
    assert 0.04 <= player.last_at - player.started_at <= 0.05


def test_server_error_raises_mapped_error() -> None:
    player = Player(ClientOptions("http://x", "t"))
    server = FakeServer()
    server.handle(player.start())
    with pytest.raises(NotFound, match="server error 404: no such app"):
        player.receive(server.conn.send(Error(ErrorCode.NOT_FOUND, "no such app")), 0.0)


def test_server_bye_ends_the_run() -> None:
    player = Player(ClientOptions("http://x", "t", moves=5))
    server = FakeServer()
    inbox = server.handle(player.start())
    for data in inbox:
        player.receive(data, 1.0)
    player.receive(server.conn.send(Bye("shutting down")), 1.0)
    assert player.done(1.0)
    assert player.finish() is None


def test_frame_before_welcome_is_out_of_state() -> None:
    player = Player(ClientOptions("http://x", "t"))
    server = ServerConnection()
    server.receive_data(player.start())
    server.send(Welcome("s", "u", "view", "a", W, H, 16, 0, ()))  # lost on the way
    frame = Frame(seq=1, input_seq=0, keyframe=True, width=W, height=H, tiles=(), checksum=0)
    with pytest.raises(InvalidState):
        player.receive(server.send(frame), 0.0)


def test_error_codes() -> None:
    assert isinstance(error_for(403, "view role"), Forbidden)
    assert isinstance(error_for(500, "boom"), TransportError)
    assert str(error_for(ErrorCode.FORBIDDEN, "view role")) == "server error 403: view role"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"transport": "pigeon"},
        {"mode": "pixels"},
        {"mode": "video", "transport": "ws"},
        {"open_code": "ABC", "app": "2048"},
        {"open_code": "ABC", "session": "room"},
        {"moves": -1},
        {"frames": -2},
        {"seconds": 0},
        {"moves": None},
        {"timeout": 0},
    ],
)
def test_options_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ClientOptions("http://x", "t", **kwargs)  # type: ignore[arg-type]


# -- video mode --------------------------------------------------------------------


class FakeVideoServer(FakeServer):
    """Video mode: Welcome, then a tile-less Frame only to answer an Input."""

    def handle(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        for msg in self.conn.receive_data(data):
            if isinstance(msg, Hello):
                assert msg.mode == "video"
                welcome = Welcome(
                    session="s1", user="alice", role=self.role, app="2048", width=W, height=H,
                    tile_size=16, dictionary_slots=0, apps=("2048",),
                )  # fmt: skip
                out.append(self.conn.send(welcome))
            elif isinstance(msg, Input):
                self.inputs.append(msg)
                self.seq += 1
                frame = Frame(
                    seq=self.seq, input_seq=msg.seq, keyframe=False, width=W, height=H,
                    tiles=(), checksum=12345,
                )  # fmt: skip
                out.append(self.conn.send(frame))
            elif isinstance(msg, Ack):
                self.acks.append(msg.seq)
        return out


def test_video_mode_waits_for_a_picture_then_plays() -> None:
    player = Player(ClientOptions("http://x", "t", mode="video", moves=3))
    server = FakeVideoServer()
    replies = server.handle(player.start())
    assert player.receive(replies.pop(), 1.0) == []  # Welcome
    assert player.streaming and not player.has_picture and player.awaiting_frame
    assert player.next_input(1.0) is None  # no picture yet: no move
    assert not player.done(1.0)
    player.on_video_frame(1.01)
    assert player.has_picture
    for step in range(3):
        sent = player.next_input(1.1 + step)
        assert sent is not None
        (frame,) = server.handle(sent)
        (ack,) = player.receive(frame, 1.104 + step)
        server.handle(ack)
    assert player.done(5.0)
    report = player.report(5.0)
    assert (report["mode"], report["moves"], report["frames"]) == ("video", 3, 3)
    assert (report["verified"], report["mismatches"], report["keyframes"]) == (0, 0, 0)
    assert report["latency_ms"]["count"] == 3 and report["latency_ms"]["max"] == 4.0
    assert server.acks == [1, 2, 3]


def test_video_mode_frames_limit_counts_decoded_frames() -> None:
    player = Player(ClientOptions("http://x", "t", mode="video", moves=0, frames=3))
    server = FakeVideoServer(role="view")
    player.receive(server.handle(player.start()).pop(), 1.0)
    for i in range(2):
        player.on_video_frame(1.0 + i / 30)
        assert not player.done(2.0)
    player.on_video_frame(1.1)
    assert player.done(2.0)


def test_stop_requested_ends_the_run() -> None:
    player = Player(ClientOptions("http://x", "t", moves=None, seconds=600))
    server = FakeServer()
    for reply in server.handle(player.start()):
        player.receive(reply, 1.0)
    assert not player.done(1.0)
    player.stop_requested = True
    assert player.done(1.0)


# -- inbox and --open --------------------------------------------------------------


def test_inbox_keeps_each_id_once_with_its_arrival_time() -> None:
    inbox = Inbox(t0=10.0)
    first = {"inbox": 7, "from": "alice", "name": "a.txt"}
    assert inbox.add(first, 10.25)
    assert not inbox.add(dict(first), 10.5)  # delivered twice (at least once): kept once
    assert inbox.add({"inbox": 8, "from": "alice", "name": "a.txt"}, 11.0)
    assert inbox.add({"id": "x1", "name": "b"}, 9.0)  # before t0 (clock skew): 0
    assert inbox.entries == [
        {"inbox": 7, "from": "alice", "name": "a.txt", "received_ms": 250.0},
        {"inbox": 8, "from": "alice", "name": "a.txt", "received_ms": 1000.0},
        {"id": "x1", "name": "b", "received_ms": 0.0},
    ]
    assert first == {"inbox": 7, "from": "alice", "name": "a.txt"}  # not mutated


def test_open_info_shows_no_code_locator_or_hash() -> None:
    entry = {
        "id": "e1", "name": "notes.txt", "size": 12, "type": "text/plain", "rights": "view",
        "locator": "blk:abc", "from": "alice", "created": 1.0, "sha256": "00",
    }  # fmt: skip
    assert open_info(entry) == {
        "name": "notes.txt", "size": 12, "type": "text/plain", "rights": "view",
    }  # fmt: skip
    assert OPEN_FIELDS == ("name", "size", "type", "rights")


def test_viewer_pages_with_paging_keys() -> None:
    player = Player(ClientOptions("http://x", "t", moves=20, app=VIEWER_APP, session="e1"))
    server = FakeServer()
    play(player, server)
    assert {i.key for i in server.inputs} <= set(PAGE_KEYS)
    assert player.report(0.0)["moves"] == 20


# -- end to end: an in-process server, both carriers, both tile modes ---------------


@pytest.mark.parametrize("transport", ["webrtc", "ws"])
@pytest.mark.parametrize("mode", ["packed", "tiles"])
async def test_headless_plays_over_each_carrier_and_mode(
    tmp_path: Path, transport: str, mode: str
) -> None:
    config = ServerConfig(
        host="127.0.0.1", port=0, data_dir=tmp_path / "data", app="2048", reference=True
    )
    async with Server(config) as srv:
        options = ClientOptions(
            srv.url, srv.admin_token, transport=transport, mode=mode, moves=12, inbox=False
        )
        client = HeadlessClient(options)
        report = await client.run()
    assert (report["transport"], report["mode"]) == (transport, mode)
    player = client._player  # noqa: SLF001
    assert player is not None
    assert player.packed_frames == (player.frames if mode == "packed" else 0)
    assert report["moves"] == 12
    assert report["mismatches"] == 0
    assert report["verified"] == report["frames"] >= 13


class LoopbackTransport:
    """A carrier whose far end is a FakeServer in this process."""

    name = "ws"

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()

    async def send(self, data: bytes) -> None:
        for reply in self.server.handle(data):
            self.inbox.put_nowait(reply)

    async def recv(self) -> bytes:
        return await self.inbox.get()


async def test_the_adapter_sends_an_owed_ack_once_no_frame_follows() -> None:
    # One move: its answer is the only frame after the keyframe, so its Ack is owed
    # with nothing coming to carry it; the adapter must wake for it within ACK_DELAY_S.
    options = ClientOptions("http://x", "t", moves=1, seconds=0.5, timeout=5.0)
    client, player, server = HeadlessClient(options), Player(options), FakeServer()
    await client._play(LoopbackTransport(server), player, asyncio.Event())  # noqa: SLF001
    assert server.acks == [1, 2]  # the keyframe at once, the answer late but surely
    assert player.ack_deadline is None and player.moves == 1
