"""Fair fan-out: a stalled viewer stays cheap, late joiners get keyframes, roles hold."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
from server_testkit import ProtoClient, http_get, running_server, wait_until, ws_url
from websockets.asyncio.client import connect

from simulacra.codecs.display import InflateStream, framebuffer_checksum, unpack_tiles
from simulacra.protocol.messages import (
    Ack,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Input,
    Message,
    PackedFrame,
)
from simulacra.protocol.session import ClientConnection
from simulacra.server import Server
from simulacra.server.sessions import AppSession, Viewer

KEYS = ("ArrowLeft", "ArrowUp", "ArrowRight", "ArrowDown")


def shared(srv: Server, name: str) -> AppSession:
    assert srv.sessions is not None
    return srv.sessions.sessions[("shared", "2048", name)]


def viewer_of(session: AppSession, user: str) -> Viewer:
    (found,) = [v for v in session.viewers if v.user == user]
    return found


async def test_stalled_viewer_blocks_nobody_and_stays_bounded(tmp_path: Path) -> None:
    async with running_server(tmp_path, max_send_buffer=64 * 1024) as srv:
        stall = srv.add_user("stall", role="view")
        bound = srv.viewer_memory_bound("2048")
        async with (
            ProtoClient.open(srv, srv.admin_token) as driver,
            # max_queue=1: the client library stops reading the socket at once, so the
            # server's writes back up in the kernel and then in its own buffers.
            connect(ws_url(srv, stall), max_queue=1, compression=None, max_size=None) as raw,
        ):
            await driver.hello(session="party")
            await driver.frame()
            await driver.send(Ack(seq=1))
            await raw.send(ClientConnection().send(Hello("stall/0", "", "party", "tiles")))
            session = shared(srv, "party")
            await wait_until(lambda: any(v.user == "stall" for v in session.viewers), "the join")
            stalled = viewer_of(session, "stall")
            peak = 0
            for seq in range(1, 41):
                await driver.send(Input(seq=seq, kind="key", key=KEYS[seq % 4]))
                while True:  # the driver keeps getting its answers, never waiting on "stall"
                    frame = await driver.frame()
                    await driver.send(Ack(seq=frame.seq))
                    if frame.input_seq == seq:
                        break
                assert driver.decoder is not None
                assert driver.decoder.checksum() == frame.checksum
                peak = max(peak, stalled.nbytes)
                assert stalled.nbytes <= bound
            # It holds a few frames at most, never one per input.
            assert stalled.acked == 0 and stalled.next_seq - 1 <= srv.config.frame_window
            status = json.loads(
                (
                    await http_get(
                        srv.url + "/api/status", {"Authorization": f"Bearer {srv.admin_token}"}
                    )
                ).body
            )
            (party,) = [s for s in status["sessions"] if s["name"] == "party"]
            assert party["viewer_bytes_bound"] == bound
            by_user = {v["user"]: v for v in party["viewer_memory"]}
            assert set(by_user) == {"admin", "stall"}
            assert 0 < by_user["stall"]["bytes"] <= bound
            assert by_user["stall"]["in_flight"] == stalled.next_seq - 1
            assert peak > 0
            raw.transport.abort()  # a close handshake would wait on a reader that never reads
        await wait_until(lambda: srv.connection_count == 0, "both links to go")


async def test_late_joiner_gets_a_keyframe_of_the_current_picture(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        bob = srv.add_user("bob", role="view")
        async with ProtoClient.open(srv, srv.admin_token) as driver:
            await driver.hello(session="late")
            await driver.frame()
            await driver.send(Ack(seq=1))
            for seq in range(1, 9):
                await driver.send(Input(seq=seq, kind="key", key=KEYS[seq % 4]))
            while (frame := await driver.frame()).input_seq < 8:
                await driver.send(Ack(seq=frame.seq))
            assert driver.decoder is not None
            picture = driver.decoder.framebuffer.copy()
            async with ProtoClient.open(srv, bob) as late:
                welcome = await late.hello(session="late")
                key = await late.frame()
                assert (key.seq, key.keyframe) == (1, True)
                assert len(key.tiles) == (welcome.width // 16) * (welcome.height // 16)
                assert late.decoder is not None
                assert (late.decoder.framebuffer == picture).all()
                assert key.checksum == framebuffer_checksum(picture)


async def test_view_role_watches_but_cannot_steer(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        bob = srv.add_user("bob", role="view")
        async with (
            ProtoClient.open(srv, srv.admin_token) as driver,
            ProtoClient.open(srv, bob) as watcher,
        ):
            await driver.hello(session="roles")
            await driver.frame()
            assert (await watcher.hello(session="roles")).role == "view"
            await watcher.frame()
            session = shared(srv, "roles")
            version = session.version
            # The refusal is written in the same step that would have queued the input.
            await watcher.send(Input(seq=1, kind="key", key="ArrowLeft"))
            refusal = await watcher.recv_unchecked()
            assert refusal == Error(
                code=ErrorCode.FORBIDDEN, message="view-only user cannot send input"
            )
            assert viewer_of(session, "bob").applied_input == 0
            assert session.version == version
            # The controller steers, and the watcher sees it.
            await driver.send(Ack(seq=1))
            await watcher.send(Ack(seq=1))
            await driver.send(Input(seq=1, kind="key", key="ArrowDown"))
            while (await driver.frame()).input_seq < 1:
                pass
            assert driver.decoder is not None and watcher.decoder is not None
            while watcher.decoder.checksum() != driver.decoder.checksum():
                frame = await watcher.frame()
                assert frame.input_seq == 0  # its own (refused) input was never applied
                await watcher.send(Ack(seq=frame.seq))


async def test_watchers_share_encodes_and_every_picture_verifies(tmp_path: Path) -> None:
    # Four join keyframes are nearly all the bytes of this short run: lift the regroup
    # byte budget (its own test is in test_sessions) so the merge can happen at once.
    async with running_server(tmp_path, regroup_budget=1.0) as srv:
        tokens = [srv.add_user(f"w{i}", role="view") for i in range(3)]
        async with (
            ProtoClient.open(srv, srv.admin_token) as driver,
            ProtoClient.open(srv, tokens[0]) as w0,
            ProtoClient.open(srv, tokens[1]) as w1,
            ProtoClient.open(srv, tokens[2]) as w2,
        ):
            clients = (driver, w0, w1, w2)
            for client in clients:  # one after the other: four groups at first
                await client.hello(session="shared-encodes")
                key = await client.frame()
                assert key.keyframe
                await client.send(Ack(seq=key.seq))
            session = shared(srv, "shared-encodes")
            for seq in range(1, 11):
                await driver.send(Input(seq=seq, kind="key", key=KEYS[seq % 4]))
                answer = None
                while answer is None or answer.input_seq < seq:
                    answer = await driver.frame()
                    await driver.send(Ack(seq=answer.seq))
                assert driver.decoder is not None
                assert driver.decoder.checksum() == answer.checksum
                for watcher in clients[1:]:
                    assert watcher.decoder is not None
                    while watcher.decoder.checksum() != answer.checksum:
                        frame = await watcher.frame()
                        assert watcher.decoder.checksum() == frame.checksum
                        await watcher.send(Ack(seq=frame.seq))
            # The first pass with four groups in step merged three of them by keyframe:
            # from then on each picture is encoded twice at most, not four times.
            assert session.stats.regroups >= 1
            assert len(session.groups) <= 2
            assert session.stats.encodes < session.stats.frames


class PackedClient(ProtoClient):
    """ProtoClient that also takes PackedFrames (inflated from its own stream)."""

    def __init__(self, ws: Any) -> None:
        super().__init__(ws)
        self.inflater = InflateStream()
        self.kinds: list[str] = []

    async def recv(self) -> Message:
        async with asyncio.timeout(10):
            data = await self.ws.recv()
        assert isinstance(data, bytes)
        (msg,) = self.conn.receive_data(data)
        if isinstance(msg, Frame | PackedFrame):
            assert self.decoder is not None
            self.kinds.append(type(msg).__name__)
            if isinstance(msg, PackedFrame):
                raw = self.inflater.inflate(msg.data, msg.size, keyframe=msg.keyframe)
                tiles = unpack_tiles(raw, msg.count, self.decoder.grid.count)
            else:
                tiles = list(msg.tiles)
            self.decoder.apply(tiles, keyframe=msg.keyframe)
            if isinstance(msg, PackedFrame):  # packed mode: the tile-table checksum
                assert self.decoder.table_checksum() == msg.checksum
            else:
                assert self.decoder.checksum() == msg.checksum
        return msg

    async def frame(self) -> Any:
        msg = await self.recv()
        assert isinstance(msg, Frame | PackedFrame), msg
        return msg


async def test_packed_viewers_share_a_stream_and_forks_copy_it(tmp_path: Path) -> None:
    # A window of 4 frames: the lagging viewer below reads every 6th move, so it forks.
    async with running_server(tmp_path, frame_window=4, regroup_budget=1.0) as srv:
        tokens = [srv.add_user(f"p{i}", role="view") for i in range(3)]
        async with (
            PackedClient.open(srv, srv.admin_token) as driver,
            PackedClient.open(srv, tokens[0]) as w0,
            PackedClient.open(srv, tokens[1]) as lagging,
            PackedClient.open(srv, tokens[2]) as plain,
        ):
            clients = (driver, w0, lagging, plain)
            for client, mode in zip(clients, ("packed", "packed", "packed", "tiles"), strict=True):
                await client.hello(session="packed", mode=mode)
                key = await client.frame()
                assert key.keyframe
                await client.send(Ack(seq=key.seq))
            session = shared(srv, "packed")

            async def catch_up(client: PackedClient, picture: np.ndarray) -> None:
                assert client.decoder is not None
                while not np.array_equal(client.decoder.framebuffer, picture):
                    frame = await client.frame()
                    await client.send(Ack(seq=frame.seq))

            for seq in range(1, 13):
                await driver.send(Input(seq=seq, kind="key", key=KEYS[seq % 4]))
                answer = None
                while answer is None or answer.input_seq < seq:
                    answer = await driver.frame()
                    await driver.send(Ack(seq=answer.seq))
                await catch_up(w0, driver.decoder.framebuffer)
                await catch_up(plain, driver.decoder.framebuffer)
                if seq % 6 == 0:  # it reads only now and then: its window fills, it forks
                    await catch_up(lagging, driver.decoder.framebuffer)
            assert session.stats.forks >= 1
            assert set(driver.kinds) == set(w0.kinds) == set(lagging.kinds) == {"PackedFrame"}
            assert set(plain.kinds) == {"Frame"}
            for group in session.groups:
                modes = {m.mode for m in group.members}
                assert ("packed" in modes) <= (group.stream is not None)
