"""Fixtures every test package shares: the apps' emulators, compiled once per run.

::

    compiled_emulators (session scope)
        .root(app, ...)  ─► first call per app: load_or_compile_segments(app, root)
                           (2048: 10-70 s on 2 busy cores; sand: seconds), later calls: free
        .copy_into(data_dir, app, ...) ─► root/emulators/<app>/ copied to data_dir/emulators/<app>/
                           a server started on data_dir then loads them at once

Tests that run apps through their emulators (server, web, end-to-end, apps)
ask this fixture instead of compiling, so each app's segments compile at most
once per ``make test``. A test may patch or rewrite what it copied; the shared
root is never handed out for writing.

``stun_server``: a STUN Binding responder on 127.0.0.1 (UDP, a free port) for the
WebRTC tests of ICE servers; it counts the requests it answered.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

COMPILED_APPS = ("2048", "sand")


class CompiledEmulators:
    """One directory holding the compiled emulators of the apps asked for so far."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._compiled: set[str] = set()
        self._lock = threading.Lock()  # a test may ask from a worker thread

    def root(self, *apps: str) -> Path:
        """A data directory whose ``emulators/`` holds ``apps`` (default: 2048 and sand).

        Read-only by convention: copy with ``copy_into`` before starting a server on it.
        """
        from simulacra.apps import get_app
        from simulacra.apps.emulation import load_or_compile_segments

        with self._lock:
            for app in apps or COMPILED_APPS:
                if app not in self._compiled:
                    load_or_compile_segments(get_app(app), self._root, progress=False)
                    self._compiled.add(app)
        return self._root

    def copy_into(self, data_dir: Path, *apps: str) -> Path:
        """Copy the emulators of ``apps`` (default: 2048 and sand) into ``data_dir``; return it."""
        root = self.root(*apps)
        for app in apps or COMPILED_APPS:
            shutil.copytree(
                root / "emulators" / app, data_dir / "emulators" / app, dirs_exist_ok=True
            )
        return data_dir


@pytest.fixture(scope="session")
def compiled_emulators(tmp_path_factory: pytest.TempPathFactory) -> CompiledEmulators:
    """The session's shared emulator compiles (each app compiled on first use)."""
    return CompiledEmulators(tmp_path_factory.mktemp("compiled-emulators"))


class StunResponder(asyncio.DatagramProtocol):
    """Answers STUN Binding Requests with the sender's address (XOR-MAPPED-ADDRESS)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0
        self.sources: set[tuple[str, int]] = set()  # who asked: tells the peers apart
        self.port = 0

    @property
    def url(self) -> str:
        return f"stun:127.0.0.1:{self.port}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        from aioice import stun

        try:
            request = stun.parse_message(data)
        except ValueError:
            return  # not STUN: a real server drops it too
        if (request.message_method, request.message_class) != (
            stun.Method.BINDING,
            stun.Class.REQUEST,
        ):
            return
        self.requests += 1
        self.sources.add((addr[0], addr[1]))
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
            attributes={"XOR-MAPPED-ADDRESS": addr},
        )
        response.add_fingerprint()
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)


@pytest.fixture
async def stun_server() -> AsyncIterator[StunResponder]:
    """A STUN server on 127.0.0.1 for the test's event loop."""
    loop = asyncio.get_running_loop()
    transport, responder = await loop.create_datagram_endpoint(
        StunResponder, local_addr=("127.0.0.1", 0)
    )
    try:
        yield responder
    finally:
        transport.close()
