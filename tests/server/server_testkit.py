"""Helpers for the server tests: an in-process server and a tiny protocol client."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection as WsClientConnection
from websockets.asyncio.client import connect

from simulacra.codecs.display import FrameDecoder
from simulacra.protocol.messages import Frame, Hello, Message, Welcome
from simulacra.protocol.session import ClientConnection
from simulacra.protocol.wire import decode_message
from simulacra.server import Server, ServerConfig

DEADLINE_S = 20.0  # generous: a 2-core CI machine under load


@asynccontextmanager
async def running_server(
    data_dir: Path, *, load_runner: Any = None, **overrides: Any
) -> AsyncIterator[Server]:
    """An in-process server on a free port.

    Apps run on their reference code unless ``reference=False`` is given: most
    tests are about streaming, and compiling emulators takes seconds. Tests of
    the emulated path use the ``data_dir`` fixture, whose emulators are compiled.
    """
    overrides.setdefault("reference", True)
    cfg = ServerConfig(host="127.0.0.1", port=0, data_dir=data_dir, **overrides)
    async with Server(cfg, load_runner=load_runner) as srv:
        yield srv


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes


def _get(url: str, headers: dict[str, str]) -> HttpResult:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=DEADLINE_S) as resp:
            return HttpResult(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as exc:
        return HttpResult(exc.code, dict(exc.headers.items()), exc.read())


async def http_get(url: str, headers: dict[str, str] | None = None) -> HttpResult:
    return await asyncio.to_thread(_get, url, headers or {})


def ws_url(srv: Server, token: str, transport: str = "ws") -> str:
    return f"ws://127.0.0.1:{srv.port}/signal?token={token}&transport={transport}"


async def recv_ice(ws: WsClientConnection) -> list[dict[str, Any]]:
    """The first frame of a webrtc signaling socket: the server's ICE server list."""
    async with asyncio.timeout(DEADLINE_S):
        message = await ws.recv()
    assert isinstance(message, str)
    obj = json.loads(message)
    assert obj["type"] == "ice", obj
    servers = obj["iceServers"]
    assert isinstance(servers, list)
    return servers


async def wait_until(predicate: object, what: str, deadline: float = DEADLINE_S) -> None:
    """Poll ``predicate()`` until true; fail after ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not predicate():  # type: ignore[operator]
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class ProtoClient:
    """The client side of the protocol over ``transport=ws``; verifies every frame."""

    def __init__(self, ws: WsClientConnection) -> None:
        self.ws = ws
        self.conn = ClientConnection()
        self.welcome: Welcome | None = None
        self.decoder: FrameDecoder | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, srv: Server, token: str) -> AsyncIterator[ProtoClient]:
        async with connect(ws_url(srv, token), compression=None, max_size=None) as ws:
            yield cls(ws)

    async def send(self, msg: Message) -> None:
        await self.ws.send(self.conn.send(msg))

    async def recv(self) -> Message:
        async with asyncio.timeout(DEADLINE_S):
            data = await self.ws.recv()
        assert isinstance(data, bytes)
        (msg,) = self.conn.receive_data(data)
        if isinstance(msg, Frame):
            assert self.decoder is not None
            self.decoder.apply(msg.tiles, keyframe=msg.keyframe)
        return msg

    async def recv_unchecked(self) -> Message:
        """The next message, past the client state machine (for a non-fatal Error)."""
        async with asyncio.timeout(DEADLINE_S):
            data = await self.ws.recv()
        assert isinstance(data, bytes)
        return decode_message(data)

    async def hello(self, app: str = "", session: str = "", mode: str = "tiles") -> Welcome:
        await self.send(Hello(client="test/0", app=app, session=session, mode=mode))
        msg = await self.recv()
        assert isinstance(msg, Welcome), msg
        self.welcome = msg
        self.decoder = FrameDecoder(msg.width, msg.height, dictionary_slots=msg.dictionary_slots)
        return msg

    async def frame(self) -> Frame:
        msg = await self.recv()
        assert isinstance(msg, Frame), msg
        return msg
