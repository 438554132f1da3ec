"""Share a file without sending it: sender uploads and shares, recipient opens the picture.

Everything the recipient receives is recorded; the file's unique 32-byte marker
must never be in it. With download rights the recipient gets the exact bytes.
"""

from __future__ import annotations

import asyncio
import io
import secrets

import pytest
from server_testkit import DEADLINE_S, running_server, ws_url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from simulacra.client.files_api import FilesClient, redeem
from simulacra.codecs.display import FrameDecoder
from simulacra.protocol.messages import Frame, Hello, Input, Message, Welcome
from simulacra.protocol.session import ClientConnection
from simulacra.protocol.wire import decode_message, encode_message


def _document(marker: bytes) -> bytes:
    lines = [f"{i:04d} the quick brown fox jumps over the lazy dog".encode() for i in range(400)]
    lines[37] = b"MARKER " + marker
    return b"\n".join(lines) + b"\n"


class RecordingSink:
    """A viewer's connection as the session sees it: frames become wire bytes, recorded."""

    def __init__(self) -> None:
        self.wire: list[bytes] = []
        self.arrived = asyncio.Event()

    def congested(self) -> bool:
        return False

    def buffered(self) -> int:
        return 0

    def send_message(self, msg: Message) -> None:
        self.wire.append(encode_message(msg))
        self.arrived.set()

    def abort(self, code: int, message: str) -> None:
        raise AssertionError(f"session aborted the viewer: {code} {message}")


async def _share(srv, marker: bytes, rights: str, record: bytearray) -> tuple[str, str, bytes]:
    alice, bob = srv.add_user("alice"), srv.add_user("bob", role="view")
    data = _document(marker)
    async with FilesClient(srv.url, alice) as a:
        entry = await a.put(data, name="notes.txt")
        code = (await a.share(entry["id"], to="bob", rights=rights))["code"]
    log = io.BytesIO()
    got = await redeem(srv.url, bob, code, record=log)  # what `client --open` does first
    record.extend(log.getvalue())
    assert got["name"].encode() in record  # the recording does see what arrived
    return bob, got["id"], data


async def test_view_recipient_gets_the_picture_and_never_the_bytes(tmp_path):
    marker = secrets.token_hex(16).encode()  # 32 bytes, unique to this run
    record = bytearray()
    async with running_server(tmp_path) as srv:
        _, entry_id, data = await _share(srv, marker, "view", record)
        assert marker in data
        session = srv.files_api.open_viewer(srv.sessions, "bob", entry_id)
        sink = RecordingSink()
        viewer = session.join(sink, "bob", "view")
        decoder: FrameDecoder | None = None
        frames = mismatches = 0
        inputs = ["PageDown", "ArrowDown", "End", "Home"]
        seq = 0
        while frames < 8:
            async with asyncio.timeout(DEADLINE_S):
                while len(sink.wire) <= frames:
                    sink.arrived.clear()
                    await sink.arrived.wait()
            msg = decode_message(sink.wire[frames])
            frames += 1
            assert isinstance(msg, Frame)
            if decoder is None:
                decoder = FrameDecoder(msg.width, msg.height)
            decoder.apply(list(msg.tiles), keyframe=msg.keyframe)
            mismatches += decoder.checksum() != msg.checksum
            session.ack(viewer, msg.seq)
            if inputs:
                seq += 1
                key = inputs.pop(0)
                session.submit_input(
                    viewer, Input(seq=seq, kind="key", key=key, x=0, y=0, buttons=0)
                )
            elif frames >= 5:
                break
        session.leave(viewer)
        assert mismatches == 0 and frames >= 5
        assert decoder is not None and session.framebuffer is not None
        assert (decoder.framebuffer == session.framebuffer).all()
        received = bytes(record) + b"".join(sink.wire)
        assert marker not in received
        assert data[:64] not in received


async def test_download_recipient_gets_the_exact_bytes(tmp_path):
    marker = secrets.token_hex(16).encode()
    async with running_server(tmp_path) as srv:
        bob, entry_id, data = await _share(srv, marker, "download", bytearray())
        async with FilesClient(srv.url, bob) as b:
            info, got = await b.get(entry=entry_id)
        assert got == data and info["rights"] == "download"


async def test_open_over_the_stream_protocol(tmp_path):
    """The recipient's real connection: Hello(app="viewer", session=entry id), tiles only."""
    marker = secrets.token_hex(16).encode()
    record = bytearray()
    async with running_server(tmp_path) as srv:
        bob, entry_id, _ = await _share(srv, marker, "view", record)
        async with connect(ws_url(srv, bob), compression=None, max_size=None) as ws:
            conn = ClientConnection()
            await ws.send(
                conn.send(Hello(client="test/0", app="viewer", session=entry_id, mode="tiles"))
            )
            decoder = None
            frames = mismatches = 0
            while frames < 3:
                async with asyncio.timeout(DEADLINE_S):
                    data = await ws.recv()
                record.extend(data)
                (msg,) = conn.receive_data(data)
                if isinstance(msg, Welcome):
                    assert msg.app == "viewer"
                    decoder = FrameDecoder(
                        msg.width, msg.height, dictionary_slots=msg.dictionary_slots
                    )
                    continue
                assert isinstance(msg, Frame) and decoder is not None
                decoder.apply(list(msg.tiles), keyframe=msg.keyframe)
                mismatches += decoder.checksum() != msg.checksum
                frames += 1
                await ws.send(
                    conn.send(Input(seq=frames, kind="key", key="PageDown", x=0, y=0, buttons=0))
                )
        assert mismatches == 0
        assert marker not in record


async def test_revoking_ends_an_open_viewer(tmp_path):
    """A recipient already looking at the file loses the picture when the owner revokes."""
    from simulacra.protocol.messages import Error, ErrorCode

    async with running_server(tmp_path) as srv:
        alice, bob = srv.add_user("alice"), srv.add_user("bob", role="view")
        async with FilesClient(srv.url, alice) as a:
            entry = await a.put(_document(b"m" * 32), name="notes.txt")
            code = (await a.share(entry["id"], to="bob", rights="view"))["code"]
            got = await redeem(srv.url, bob, code)
            async with connect(ws_url(srv, bob), compression=None, max_size=None) as ws:
                conn = ClientConnection()
                await ws.send(conn.send(Hello(client="test/0", app="viewer", session=got["id"])))
                seen: list[type] = []
                while Frame not in seen:  # Welcome, then the keyframe
                    async with asyncio.timeout(DEADLINE_S):
                        seen += [type(m) for m in conn.receive_data(await ws.recv())]
                await a.revoke(code)
                messages = []
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(DEADLINE_S):
                        while True:
                            messages += conn.receive_data(await ws.recv())
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
        last = messages[-1]
        assert isinstance(last, Error) and last.code == ErrorCode.NOT_FOUND
        assert "revoked" in last.message
        assert ("private", "bob", f"viewer:{got['id']}") not in srv.sessions.sessions
