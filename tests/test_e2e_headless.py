"""End to end: the headless client against an in-process server over real loopback.

server (port 0, tmp data dir) ◄── WS /signal ── HeadlessClient ── webrtc data channel | ws frames
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from simulacra.client import ClientOptions, HeadlessClient
from simulacra.errors import Unauthorized
from simulacra.server import Server, ServerConfig

pytestmark = pytest.mark.timeout(240)

REPORT_KEYS = {
    "transport", "app", "session", "user", "role", "frames", "verified", "mismatches",
    "keyframes", "moves", "latency_ms", "bytes", "bytes_per_frame", "fps", "seconds",
    "width", "height", "checksum",
}  # fmt: skip
LATENCY_KEYS = {"p50", "p99", "mean", "max", "count"}


@pytest.fixture(scope="module")
def emulator_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2048's compiled emulators, built once for this module (10-70 s on 2 cores)."""
    from simulacra.apps import get_app
    from simulacra.apps.emulation import load_or_compile_segments

    root = tmp_path_factory.mktemp("emulators")
    load_or_compile_segments(get_app("2048"), root, progress=False)
    return root


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """A server running apps on reference code: connection handling, no compile."""
    config = ServerConfig(
        host="127.0.0.1", port=0, data_dir=tmp_path / "data", app="2048", reference=True
    )
    async with Server(config) as srv:
        yield srv


@pytest.fixture
async def emulated_server(tmp_path: Path, emulator_cache: Path) -> AsyncIterator[Server]:
    """A server running 2048 through its compiled emulators, as `simulacra serve` does."""
    shutil.copytree(emulator_cache / "emulators", tmp_path / "data" / "emulators")
    config = ServerConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "data", app="2048")
    async with Server(config) as srv:
        yield srv


async def until_idle(srv: Server, deadline_s: float = 15.0) -> None:
    """Poll until the server holds no connection and no peer, or fail at the deadline."""
    deadline = time.monotonic() + deadline_s
    while srv.connection_count or srv.peer_count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"server still holds {srv.connection_count} connections, {srv.peer_count} peers"
            )
        await asyncio.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["webrtc", "ws"])
async def test_plays_sixty_moves(emulated_server: Server, transport: str) -> None:
    server = emulated_server
    options = ClientOptions(server.url, server.admin_token, transport=transport, moves=60)
    report = await HeadlessClient(options).run()
    assert set(report) == REPORT_KEYS
    assert report["transport"] == transport
    assert report["app"] == "2048"
    assert report["role"] == "control"
    assert report["moves"] == 60
    assert report["frames"] >= 50
    assert report["verified"] == report["frames"]
    assert report["mismatches"] == 0
    assert report["keyframes"] >= 1
    assert set(report["latency_ms"]) == LATENCY_KEYS
    assert report["latency_ms"]["count"] == 60
    assert report["width"] % 16 == 0 and report["height"] % 16 == 0
    assert report["bytes"] > 0
    await until_idle(server)


async def test_wrong_token_in_process(server: Server) -> None:
    options = ClientOptions(server.url, "not-a-token", transport="webrtc", moves=1)
    with pytest.raises(Unauthorized, match="401"):
        await HeadlessClient(options).run()
    await until_idle(server)


async def _simulacra(*args: str) -> tuple[int, str, str]:
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("SIMULACRA_"):
            del env[name]  # the flags under test, not the caller's environment
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulacra.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_json_prints_one_object(server: Server) -> None:
    code, out, err = await _simulacra(
        "client", server.url, "--token", server.admin_token, "--transport", "ws",
        "--moves", "10", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert out.count("\n") == 1
    report = json.loads(out)
    assert set(report) == REPORT_KEYS
    assert report["moves"] == 10 and report["mismatches"] == 0
    assert report["verified"] == report["frames"] >= 11
    await until_idle(server)


async def test_cli_wrong_token_is_one_line(server: Server) -> None:
    code, out, err = await _simulacra(
        "client", f"{server.url}/?token=wrong", "--transport", "ws", "--moves", "1"
    )
    assert code != 0
    assert out == ""
    assert err == "simulacra: server refused the connection: 401 invalid token\n"
    code, out, _ = await _simulacra("client", server.url, "--token", "wrong", "--json")
    assert code != 0
    assert json.loads(out) == {
        "error": {
            "type": "Unauthorized",
            "message": "server refused the connection: 401 invalid token",
        }
    }
    await until_idle(server)
