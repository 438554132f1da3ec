"""End to end: the headless client against an in-process server over real loopback.

server (port 0, tmp data dir) ◄── WS /signal ── HeadlessClient ── webrtc data channel | ws frames
                              ◄── WS /api ───── (files API: --open CODE, inbox entries)
                              ──► VP8 track ──► (video mode)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from simulacra.client import ClientOptions, HeadlessClient
from simulacra.client.files_api import FilesClient
from simulacra.errors import Unauthorized
from simulacra.server import Server, ServerConfig

pytestmark = pytest.mark.timeout(240)

REPORT_KEYS = {
    "transport", "mode", "app", "session", "user", "role", "frames", "verified", "mismatches",
    "keyframes", "moves", "latency_ms", "bytes", "bytes_per_frame", "fps", "seconds",
    "width", "height", "checksum", "video", "open", "inbox",
}  # fmt: skip
VIDEO_KEYS = {
    "frames", "fps", "bytes", "packets", "bytes_per_frame", "bytes_source", "width", "height",
}  # fmt: skip
LATENCY_KEYS = {"p50", "p99", "mean", "max", "count"}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """A server running apps on reference code: connection handling, no compile."""
    config = ServerConfig(
        host="127.0.0.1", port=0, data_dir=tmp_path / "data", app="2048", reference=True
    )
    async with Server(config) as srv:
        yield srv


@pytest.fixture
async def emulated_server(tmp_path: Path, compiled_emulators: Any) -> AsyncIterator[Server]:
    """A server running 2048 through its compiled emulators, as `simulacra serve` does.

    The emulators are the run's one compile (``compiled_emulators``, tests/conftest.py).
    """
    compiled_emulators.copy_into(tmp_path / "data", "2048")
    config = ServerConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "data", app="2048")
    async with Server(config) as srv:
        yield srv


async def until(condition: Callable[[], bool], what: str, deadline_s: float = 30.0) -> None:
    """Poll ``condition`` until it holds, or fail at the deadline."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


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


async def test_ws_record_holds_every_message(server: Server, tmp_path: Path) -> None:
    record = tmp_path / "stream.rec"
    options = ClientOptions(
        server.url, server.admin_token, transport="ws", moves=5, record=str(record), inbox=False
    )
    report = await HeadlessClient(options).run()
    # On the ws carrier without /api every message received is a protocol message.
    assert report["bytes"] > 0
    assert record.stat().st_size == report["bytes"]
    assert (report["inbox"], report["open"], report["video"]) == (None, None, None)
    await until_idle(server)


async def test_inbox_entries_arrive_while_connected(server: Server) -> None:
    alice = server.add_user("alice", role="control")
    bob = server.add_user("bob", role="control")
    async with FilesClient(server.url, alice) as sender:
        entry = await sender.put(b"for bob\n", name="early.txt")
        await sender.share(entry["id"], to="bob")  # before bob connects: delivered on connect
        client = HeadlessClient(
            ClientOptions(server.url, bob, transport="ws", moves=0, seconds=120)
        )
        run = asyncio.create_task(client.run())
        await until(lambda: client.inbox is not None and len(client.inbox.entries) == 1, "first")
        assert server.files_api is not None
        await until(lambda: server.files_api.online("bob") == 1, "bob online")
        share = await sender.share(entry["id"], to="bob")
        await until(lambda: len(client.inbox.entries) == 2 or run.done(), "second")
        client.stop()
        report = await asyncio.wait_for(run, 30)
    assert share["delivered"] is True
    inbox = report["inbox"]
    assert [item["name"] for item in inbox] == ["early.txt", "early.txt"]
    assert inbox[0]["inbox"] != inbox[1]["inbox"]
    assert all(item["from"] == "alice" and item["rights"] == "view" for item in inbox)
    assert all("code" not in item and "locator" not in item for item in inbox)
    assert 0 <= inbox[0]["received_ms"] <= inbox[1]["received_ms"]
    assert report["mismatches"] == 0
    await until_idle(server)


async def test_open_code_shows_the_picture_never_the_bytes(server: Server, tmp_path: Path) -> None:
    alice = server.add_user("alice", role="control")
    bob = server.add_user("bob", role="control")
    marker = os.urandom(16).hex().encode()  # 32 bytes, unique to this run
    text = b"".join(b"line %d of the shared notes\n" % i for i in range(40))
    text += b"secret: " + marker + b"\n"
    async with FilesClient(server.url, alice) as sender:
        entry = await sender.put(text, name="notes.txt")
        share = await sender.share(entry["id"], to="bob", rights="view")
    record = tmp_path / "bob.rec"
    code, out, err = await _simulacra(
        "client", server.url, "--token", bob, "--open", share["code"], "--frames", "5",
        "--record", str(record), "--json",
    )  # fmt: skip
    assert code == 0, out + err
    report = json.loads(out)
    assert report["open"] == {
        "name": "notes.txt", "size": len(text), "type": entry["type"], "rights": "view",
    }  # fmt: skip
    assert report["app"] == "viewer"
    assert report["mismatches"] == 0
    assert report["verified"] == report["frames"] >= 5
    received = record.read_bytes()
    assert b"notes.txt" in received  # the redeemed entry came over /api
    assert marker not in received
    assert share["code"].encode() not in received
    await until_idle(server)


@pytest.mark.slow
async def test_video_mode_counts_decoded_frames(server: Server) -> None:
    options = ClientOptions(
        server.url, server.admin_token, transport="webrtc", mode="video", moves=3, inbox=False
    )
    report = await HeadlessClient(options).run()
    assert report["mode"] == "video"
    assert report["moves"] == 3 and report["latency_ms"]["count"] == 3
    assert report["mismatches"] == 0 and report["verified"] == 0  # lossy: nothing to verify
    video = report["video"]
    assert set(video) == VIDEO_KEYS
    assert video["frames"] >= 1 and video["bytes"] > 0 and video["packets"] >= 1
    assert (video["width"], video["height"]) == (report["width"], report["height"])
    await until_idle(server)


async def test_open_forged_code_is_one_error(server: Server) -> None:
    bob = server.add_user("bob", role="control")
    code, out, _ = await _simulacra(
        "client", server.url, "--token", bob, "--open", "A" * 26, "--frames", "1", "--json"
    )
    assert code == 1
    error = json.loads(out)["error"]
    assert error["type"] == "CodeError"
    assert "\n" not in error["message"]
    await until_idle(server)
