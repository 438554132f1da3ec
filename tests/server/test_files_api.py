"""The files API over a real in-process server: upload, share, deliver, redeem, download."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import struct

import pytest
from server_testkit import DEADLINE_S, running_server, wait_until
from websockets.asyncio.client import connect

from simulacra.client.files_api import FilesClient, api_url, error_from, redeem
from simulacra.errors import (
    CodeError,
    CodeExpired,
    CodeRevoked,
    ConfigError,
    Forbidden,
    InvalidState,
    PayloadTooBig,
    ProtocolError,
    SimulacraError,
    Unauthorized,
)

BIG = os.urandom(700_000) + b"compressible " * 40_000  # 1.2 MB: five 256 KiB chunks and more


@pytest.fixture
async def server(tmp_path):
    async with running_server(tmp_path) as srv:
        yield srv


def _rows(data_dir, table):
    db = sqlite3.connect(data_dir / "simulacra.db")
    try:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def test_api_url():
    assert api_url("http://127.0.0.1:8080", "T") == "ws://127.0.0.1:8080/api?token=T"
    assert api_url("https://h.example/x?token=Q") == "wss://h.example/api?token=Q"
    with pytest.raises(ConfigError, match="no token"):
        api_url("http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="not a server URL"):
        api_url("127.0.0.1:8080", "T")


def test_error_from_maps_names_to_our_classes():
    assert type(error_from({"type": "CodeExpired", "message": "m"})) is CodeExpired
    assert type(error_from({"type": "Exception", "message": "m"})) is SimulacraError
    assert type(error_from({"type": "__class__", "message": "m"})) is SimulacraError


async def test_share_deliver_redeem_download(server):
    alice, bob = server.add_user("alice"), server.add_user("bob", role="view")
    async with FilesClient(server.url, alice) as a, FilesClient(server.url, bob) as b:
        seen: list[int] = []
        entry = await a.put(BIG, name="big.bin", progress=seen.append)
        assert seen[-1] == len(BIG) and seen == sorted(seen)
        assert entry["sha256"] == hashlib.sha256(BIG).hexdigest()
        assert entry["rights"] == "owner" and entry["size"] == len(BIG)
        assert [e["id"] for e in await a.ls()] == [entry["id"]]

        share = await a.share(entry["id"], to="bob", rights="download", ttl="1h", uses=1)
        assert share["delivered"] is True and len(share["code"]) == 26
        async with asyncio.timeout(DEADLINE_S):
            pushed = await b.inbox_items.get()  # the live channel
        assert pushed["name"] == "big.bin" and pushed["from"] == "alice"
        assert "code" not in pushed

        got = await b.redeem(share["code"])
        assert got["rights"] == "download" and got["from"] == "alice"
        info, data = await b.get(entry=got["id"])
        assert data == BIG and info["id"] == got["id"]
        _, part = await b.get(entry=got["id"], start=300_000, end=300_100)
        assert part == BIG[300_000:300_100]
        assert await b.inbox() == []  # already delivered live


async def test_view_rights_never_download(server):
    alice, bob = server.add_user("alice"), server.add_user("bob")
    async with FilesClient(server.url, alice) as a, FilesClient(server.url, bob) as b:
        entry = await a.put(b"secret view-only bytes", name="v.txt")
        code = (await a.share(entry["id"], to="bob"))["code"]
        with pytest.raises(Forbidden, match="view-only"):
            await b.get(code=code)
        (mine,) = await b.ls()
        assert mine["rights"] == "view" and "sha256" not in mine
        with pytest.raises(Forbidden):
            await b.get(entry=mine["id"])


async def test_offline_recipient_gets_inbox_on_next_connect(server):
    alice, bob = server.add_user("alice"), server.add_user("bob")
    async with FilesClient(server.url, alice) as a:
        entry = await a.put(b"for later", name="later.txt")
        share = await a.share(entry["id"], to="bob", rights="download")
        assert share["delivered"] is False
    async with FilesClient(server.url, bob) as b:
        async with asyncio.timeout(DEADLINE_S):
            item = await b.inbox_items.get()
        assert item["name"] == "later.txt"
        got = await b.redeem(inbox=item["inbox"])
        assert (await b.get(entry=got["id"]))[1] == b"for later"
    async with FilesClient(server.url, bob) as b:
        assert await b.inbox() == []  # delivered once


async def test_refusals_carry_their_error_type(server):
    alice, bob, carol = (server.add_user(n) for n in ("alice", "bob", "carol"))
    async with FilesClient(server.url, alice) as a, FilesClient(server.url, carol) as c:
        entry = await a.put(b"x" * 100, name="x")
        code = (await a.share(entry["id"], to="bob"))["code"]
        with pytest.raises(CodeError, match="another user"):
            await c.redeem(code)
        with pytest.raises(CodeError, match="unknown"):
            await c.redeem("A" * 26)
        await a.revoke(code)
        async with FilesClient(server.url, bob) as b:
            with pytest.raises(CodeRevoked, match="revoked by its owner"):
                await b.redeem(code)
        with pytest.raises(ProtocolError, match="unknown op"):
            await a.request("format_disk")
        with pytest.raises(PayloadTooBig, match="upload limit"):
            await a.request("put_begin", name="huge", size=10**12, sha256="0" * 64)
        with pytest.raises(InvalidState):
            await a.request("put_commit", upload=99)
    with pytest.raises(Unauthorized, match="401"):
        async with FilesClient(server.url, "wrong-token"):
            pass


async def test_flow_control_keeps_at_most_eight_chunks_in_flight(server):
    alice = server.add_user("alice")
    data = os.urandom(80 * 16 * 1024)  # 80 chunks of 16 KiB
    async with FilesClient(server.url, alice, chunk_bytes=16 * 1024) as a:
        assert a._ws is not None
        sent, acked, worst = [0], [0], [0]
        real_send, real_text = a._ws.send, a._text

        async def send(message):
            if isinstance(message, bytes):
                sent[0] += 1
                worst[0] = max(worst[0], sent[0] - acked[0])
            await real_send(message)

        def text(message):
            if json.loads(message).get("op") == "chunk_ack":
                acked[0] += 1
            real_text(message)

        a._ws.send, a._text = send, text  # type: ignore[method-assign]
        entry = await a.put(data, name="chunks.bin")
        assert sent[0] == 80 and acked[0] == 80
        assert 1 <= worst[0] <= 8
        assert entry["size"] == len(data)


async def test_abandoned_upload_leaves_nothing(server, tmp_path):
    alice = server.add_user("alice")
    data = os.urandom(600_000)
    uri = api_url(server.url, alice)
    async with connect(uri, compression=None) as ws:
        await ws.send(
            json.dumps(
                {
                    "id": 1,
                    "op": "put_begin",
                    "name": "gone.bin",
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
        )
        reply = json.loads(await ws.recv())
        uid = reply["upload"]
        await ws.send(struct.pack(">IQ", uid, 0) + data[:200_000])
        ack = json.loads(await ws.recv())
        assert ack == {"op": "chunk_ack", "upload": uid, "offset": 200_000}
        assert len(list((tmp_path / "uploads").iterdir())) == 1
    # The socket is gone: the half upload must vanish without a trace.
    await wait_until(lambda: not list((tmp_path / "uploads").iterdir()), "temp file removed")
    assert _rows(tmp_path, "files") == 0 and _rows(tmp_path, "entries") == 0
    assert not [p for p in (tmp_path / "blobs").iterdir()]


async def test_idle_upload_is_dropped(server, tmp_path):
    alice = server.add_user("alice")
    server.files_api.idle_timeout = 0.2
    uri = api_url(server.url, alice)
    async with connect(uri, compression=None) as ws:
        await ws.send(
            json.dumps(
                {"id": 1, "op": "put_begin", "name": "idle.bin", "size": 10, "sha256": "0" * 64}
            )
        )
        uid = json.loads(await ws.recv())["upload"]
        async with asyncio.timeout(DEADLINE_S):
            dropped = json.loads(await ws.recv())
        assert dropped == {"op": "uploads_dropped", "uploads": [uid], "reason": "idle timeout"}
        assert not list((tmp_path / "uploads").iterdir())
        await ws.send(struct.pack(">IQ", uid, 0) + b"x")
        late = json.loads(await ws.recv())
        assert late["op"] == "chunk_error" and late["error"]["type"] == "InvalidState"


async def test_bad_chunks_abort_the_upload(server, tmp_path):
    alice = server.add_user("alice")
    async with connect(api_url(server.url, alice), compression=None) as ws:
        await ws.send(
            json.dumps({"id": 1, "op": "put_begin", "name": "b", "size": 10, "sha256": "0" * 64})
        )
        uid = json.loads(await ws.recv())["upload"]
        await ws.send(struct.pack(">IQ", uid, 5) + b"x")  # not the next offset
        err = json.loads(await ws.recv())
        assert err["op"] == "chunk_error" and err["error"]["type"] == "ProtocolError"
        assert not list((tmp_path / "uploads").iterdir())
        await ws.send(b"\x00")
        err = json.loads(await ws.recv())
        assert err["op"] == "chunk_error" and "shorter" in err["error"]["message"]
        await ws.send("not json")
        assert json.loads(await ws.recv())["error"]["type"] == "ProtocolError"
        # Download chunks carry the request id as a u32: a larger one is refused up front.
        for rid in (-1, 2**32):
            await ws.send(json.dumps({"id": rid, "op": "ls"}))
            err = json.loads(await ws.recv())
            assert err["id"] is None and "integer id 0..4294967295" in err["error"]["message"]


async def test_restart_keeps_files_codes_and_inbox(tmp_path):
    data = b"survives a restart\n" * 100
    async with running_server(tmp_path) as srv:
        alice, bob = srv.add_user("alice"), srv.add_user("bob")
        async with FilesClient(srv.url, alice) as a:
            entry = await a.put(data, name="keep.txt")
            code = (await a.share(entry["id"], to="bob", rights="download"))["code"]
    async with running_server(tmp_path) as srv:
        async with FilesClient(srv.url, alice) as a:
            assert [e["id"] for e in await a.ls()] == [entry["id"]]
        async with FilesClient(srv.url, bob) as b:
            async with asyncio.timeout(DEADLINE_S):
                item = await b.inbox_items.get()
            assert item["name"] == "keep.txt"
        got = await redeem(srv.url, bob, code)
        async with FilesClient(srv.url, bob) as b:
            assert (await b.get(entry=got["id"]))[1] == data


async def test_a_slow_sink_holds_back_the_socket_not_memory(server, monkeypatch):
    import threading

    from simulacra.client import files_api

    monkeypatch.setattr(files_api, "DOWNLOAD_QUEUE_PIECES", 2)
    alice = server.add_user("alice")
    data = os.urandom(8 * 64 * 1024)  # eight 64 KiB blocks: eight download pieces

    class Sink:
        def __init__(self) -> None:
            self.go = threading.Event()
            self.parts: list[bytes] = []

        def write(self, piece: bytes) -> None:
            self.go.wait(DEADLINE_S)  # runs in a worker thread: the event loop stays free
            self.parts.append(piece)

    sink = Sink()
    async with FilesClient(server.url, alice) as a:
        entry = await a.put(data, name="slow.bin")
        task = asyncio.create_task(a.get(entry=entry["id"], sink=sink))  # type: ignore[arg-type]
        await wait_until(
            lambda: a._downloads and next(iter(a._downloads.values())).queue.full(), "a full queue"
        )
        (dl,) = a._downloads.values()
        assert dl.queue.qsize() == 2  # the bound held while the sink was stuck
        sink.go.set()
        info, none = await asyncio.wait_for(task, DEADLINE_S)
    assert none is None and info["size"] == len(data)
    assert b"".join(sink.parts) == data


async def test_open_uploads_are_bounded_per_socket_and_per_user(server, tmp_path):
    alice = server.add_user("alice")
    begin = {"op": "put_begin", "name": "u.bin", "size": 10, "sha256": "0" * 64}
    uri = api_url(server.url, alice)
    async with (
        connect(uri, compression=None) as one,
        connect(uri, compression=None) as two,
        connect(uri, compression=None) as three,
    ):
        replies = []
        for rid, ws in enumerate([one] * 5 + [two] * 3 + [three] * 3, 1):
            await ws.send(json.dumps({"id": rid, **begin}))
            replies.append(json.loads(await ws.recv()))
        refused = [(r["id"], r["error"]["message"]) for r in replies if "error" in r]
        assert refused == [
            (5, "at most 4 uploads at once per socket"),
            (10, "at most 8 uploads at once per user"),
            (11, "at most 8 uploads at once per user"),
        ]
        assert len(list((tmp_path / "uploads").iterdir())) == 8


async def test_requests_do_not_keep_an_idle_upload_alive(server, tmp_path):
    alice = server.add_user("alice")
    server.files_api.idle_timeout = 0.2
    async with connect(api_url(server.url, alice), compression=None) as ws:
        begin = {"id": 1, "op": "put_begin", "name": "i.bin", "size": 10, "sha256": "0" * 64}
        await ws.send(json.dumps(begin))
        uid = json.loads(await ws.recv())["upload"]
        # Keep the socket busy with listings, never sending a chunk, until the drop shows up.
        loop = asyncio.get_running_loop()
        end, rid, dropped = loop.time() + DEADLINE_S, 2, None
        while dropped is None:
            assert loop.time() < end, "the idle upload was never dropped"
            await ws.send(json.dumps({"id": rid, "op": "ls"}))
            rid += 1
            reply = json.loads(await ws.recv())
            if reply.get("op") == "uploads_dropped":
                dropped = reply
            await asyncio.sleep(0.02)  # pacing the requests, not waiting for state
        assert dropped == {"op": "uploads_dropped", "uploads": [uid], "reason": "idle timeout"}
        assert not list((tmp_path / "uploads").iterdir())
