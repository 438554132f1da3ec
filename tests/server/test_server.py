"""The server end to end over ``transport=ws`` and plain HTTP, on a free port."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from server_testkit import ProtoClient, http_get, running_server, wait_until, ws_url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from simulacra.protocol.messages import Ack, Error, ErrorCode, Frame, Hello, Input, Resync
from simulacra.protocol.wire import encode_message


async def test_healthz_and_index(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        health = await http_get(srv.url + "/healthz")
        assert (health.status, health.body) == (200, b"ok\n")
        index = await http_get(srv.url + "/")
        assert index.status == 200
        assert index.headers["Content-Type"] == "text/html; charset=utf-8"
        assert index.body == (Path(srv.web_root) / "index.html").read_bytes()


async def test_hello_welcome_keyframe_verifies(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv, ProtoClient.open(srv, srv.admin_token) as c:
        welcome = await c.hello()
        assert (welcome.session, welcome.user, welcome.role, welcome.app) == (
            "admin/2048",
            "admin",
            "control",
            "2048",
        )
        frame = await c.frame()
        assert (frame.seq, frame.input_seq, frame.keyframe) == (1, 0, True)
        assert len(frame.tiles) == (welcome.width // 16) * (welcome.height // 16)
        assert c.decoder is not None and c.decoder.checksum() == frame.checksum
        await c.send(Ack(seq=1))
        await c.send(Input(seq=1, kind="key", key="ArrowLeft"))
        answer = await c.frame()
        assert (answer.seq, answer.input_seq, answer.keyframe) == (2, 1, False)
        assert c.decoder.checksum() == answer.checksum
        assert srv.connection_count == 1
        await c.send(Resync(reason="test"))
        await c.send(Ack(seq=2))
        again = await c.frame()
        assert again.keyframe and c.decoder.checksum() == again.checksum
    # leaving the server closes everything
    assert srv.connection_count == 0


async def test_bad_token_is_401_without_upgrade(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        for token, reason in (("nope", b"invalid token\n"), ("", b"missing token\n")):
            with pytest.raises(InvalidStatus) as info:
                async with connect(ws_url(srv, token)):
                    pass
            assert info.value.response.status_code == 401
            assert info.value.response.body == reason
        status = await http_get(srv.url + "/api/status")
        assert status.status == 401


async def test_status_lists_sessions(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv, ProtoClient.open(srv, srv.admin_token) as c:
        await c.hello()
        await c.frame()
        auth = {"Authorization": f"Bearer {srv.admin_token}"}
        status = await http_get(srv.url + "/api/status", auth)
        assert status.status == 200
        body = json.loads(status.body)
        assert body["connections"] == 1 and body["peers"] == 0
        assert [s["name"] for s in body["sessions"]] == ["admin/2048"]
        assert "2048" in body["apps"]


async def test_view_role_input_is_403_and_stays_open(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        bob = srv.add_user("bob", role="view")
        async with ProtoClient.open(srv, bob) as c:
            welcome = await c.hello(session="shared")
            assert welcome.role == "view"
            await c.frame()
            await c.send(Input(seq=1, kind="key", key="ArrowUp"))
            err = await c.recv_unchecked()
            assert err == Error(
                code=ErrorCode.FORBIDDEN, message="view-only user cannot send input"
            )
            # Still streaming: a Resync is answered by a keyframe.
            await c.send(Ack(seq=1))
            await c.send(Resync(reason="still there?"))
            frame = await c.frame()
            assert frame.keyframe and frame.seq == 2
            assert c.decoder is not None and c.decoder.checksum() == frame.checksum


async def test_malformed_message_closes_only_that_connection(tmp_path: Path) -> None:
    async with (
        running_server(tmp_path) as srv,
        ProtoClient.open(srv, srv.admin_token) as good,
        ProtoClient.open(srv, srv.admin_token) as bad,
    ):
        await good.hello(session="together")
        await good.frame()
        await bad.hello(session="together")
        await bad.frame()
        await bad.ws.send(b"\x93\x01\x03\xc0")  # a msgpack array that is no Input
        err = await bad.recv()
        assert isinstance(err, Error) and err.code == ErrorCode.MALFORMED
        with pytest.raises(ConnectionClosed):
            await bad.ws.recv()
        assert bad.ws.close_code == 4400
        assert bad.ws.close_reason == "400 malformed message"
        await wait_until(lambda: srv.connection_count == 1, "the bad link to go")
        await good.send(Ack(seq=1))
        await good.send(Input(seq=1, kind="key", key="ArrowDown"))
        frame = await good.frame()
        assert isinstance(frame, Frame) and frame.input_seq == 1
        assert good.decoder is not None and good.decoder.checksum() == frame.checksum


async def test_hello_timeout_closes(tmp_path: Path) -> None:
    async with running_server(tmp_path, hello_timeout=0.2) as srv:
        async with connect(ws_url(srv, srv.admin_token)) as ws:
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
            assert ws.close_code == 4408
        await wait_until(lambda: srv.connection_count == 0, "the silent link to go")


async def expect_close(c: ProtoClient, code: ErrorCode, close_code: int) -> Error:
    err = await c.recv_unchecked()
    assert isinstance(err, Error) and err.code == code, err
    with pytest.raises(ConnectionClosed):
        while True:
            await c.ws.recv()
    assert c.ws.close_code == close_code
    return err


async def test_bad_messages_close_with_their_code(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        async with ProtoClient.open(srv, srv.admin_token) as c:
            await c.ws.send(b"\x00" * (1024 * 1024 + 1))
            await expect_close(c, ErrorCode.PAYLOAD_TOO_BIG, 4413)
        async with ProtoClient.open(srv, srv.admin_token) as c:
            await c.ws.send("hello?")
            await expect_close(c, ErrorCode.MALFORMED, 4400)
        async with ProtoClient.open(srv, srv.admin_token) as c:
            await c.send(Hello(client="test/0", app="doom", session="", mode="tiles"))
            err = await expect_close(c, ErrorCode.NOT_FOUND, 4404)
            assert err.message.startswith("unknown app 'doom'")
        async with ProtoClient.open(srv, srv.admin_token) as c:
            await c.ws.send(encode_message(Ack(seq=1)))  # before Hello: out of state
            await expect_close(c, ErrorCode.OUT_OF_STATE, 4409)
        await wait_until(lambda: srv.connection_count == 0, "every link to go")


async def test_shared_session_fans_out_inputs(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        bob = srv.add_user("bob", role="view")
        async with (
            ProtoClient.open(srv, srv.admin_token) as driver,
            ProtoClient.open(srv, bob) as watcher,
        ):
            assert (await driver.hello(session="party")).session == "party"
            await driver.frame()
            assert (await watcher.hello(session="party")).session == "party"
            await watcher.frame()
            await driver.send(Ack(seq=1))
            await watcher.send(Ack(seq=1))
            await driver.send(Input(seq=1, kind="key", key="ArrowLeft"))
            await driver.send(Input(seq=2, kind="key", key="ArrowRight"))
            while (await driver.frame()).input_seq < 2:
                pass
            assert driver.decoder is not None and watcher.decoder is not None
            # The watcher converges on the same picture, frame by frame.
            while watcher.decoder.checksum() != driver.decoder.checksum():
                frame = await watcher.frame()
                await watcher.send(Ack(seq=frame.seq))
            assert (watcher.decoder.framebuffer == driver.decoder.framebuffer).all()


async def test_tick_app_streams_without_input(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv, ProtoClient.open(srv, srv.admin_token) as c:
        welcome = await c.hello(app="sand")
        assert welcome.app == "sand" and welcome.session == "admin/sand"
        first = await c.frame()
        assert first.keyframe
        await c.send(Ack(seq=first.seq))
        await c.send(Input(seq=1, kind="pointer", x=welcome.width // 2, y=8, buttons=1))
        seen = first.seq
        while True:  # sand falls on its own: frames keep coming with no further input
            frame = await c.frame()
            assert c.decoder is not None and c.decoder.checksum() == frame.checksum
            await c.send(Ack(seq=frame.seq))
            seen = frame.seq
            if frame.input_seq == 1 and seen >= first.seq + 4:
                break


async def raw_get(srv_port: int, target: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", srv_port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(20):
        data = await reader.read()
    writer.close()
    return data


async def test_static_over_http_and_no_traversal(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        js = await http_get(srv.url + "/client.js")
        assert js.status == 200
        assert js.headers["Content-Type"] == "text/javascript; charset=utf-8"
        for target in ("/../server/store.py", "/%2e%2e/server/store.py", "/..%2fcli.py"):
            reply = await raw_get(srv.port, target)
            assert reply.startswith(b"HTTP/1.1 404 Not Found\r\n"), (target, reply[:80])
            assert b"import" not in reply
