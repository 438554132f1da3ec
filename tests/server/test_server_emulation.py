"""Apps run through their emulators in the server: status, patches, apps still compiling."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_testkit import DEADLINE_S, ProtoClient, http_get, running_server, wait_until
from websockets.exceptions import ConnectionClosed

from simulacra.apps.base import App, SegmentRunner, reference_runner
from simulacra.apps.emulation import EmulatedRunner, SegmentStore
from simulacra.apps.g2048 import G2048
from simulacra.client import ClientOptions, HeadlessClient
from simulacra.errors import CorruptArtifact
from simulacra.protocol.messages import Error, ErrorCode, Hello, Welcome
from simulacra.server import Server

SEGMENTS_2048 = ["row_move_left", "row_score", "glyph"]


async def get_status(srv: Server) -> dict[str, Any]:
    reply = await http_get(srv.url + "/api/status", {"Authorization": f"Bearer {srv.admin_token}"})
    assert reply.status == 200, reply.body
    body: dict[str, Any] = json.loads(reply.body)
    return body


@pytest.mark.slow
async def test_headless_play_is_served_by_emulators(data_dir: Path) -> None:
    async with running_server(data_dir, reference=False) as srv:
        assert isinstance(srv.runners.runner("2048"), EmulatedRunner)
        before = (await get_status(srv))["apps"]["2048"]
        assert (before["state"], before["mode"]) == ("ready", "emulated")
        opts = ClientOptions(srv.url, srv.admin_token, transport="ws", moves=30, seed=7)
        report = await HeadlessClient(opts).run()
        assert report["mismatches"] == 0
        status = await get_status(srv)
    apps = status["apps"]
    assert apps["sand"] == {"state": "not loaded", "mode": "emulated"}  # built on first use
    segments = apps["2048"]["segments"]
    assert sorted(segments) == sorted(SEGMENTS_2048)
    for name, seg in segments.items():
        assert seg["queries"] > 0, name
        assert seg["fallbacks"] == 0, name
        assert seg["verified"] == "exhaustive", name
        assert (seg["version"], seg["patches"]) == (0, []), name
        assert 0 < seg["bytes"], name
        assert isinstance(seg["review_regions"], list), name
        for region in seg["review_regions"]:
            assert 0 <= region["start"] < region["end"] <= 1 << seg["in_bits"], name
    assert (segments["row_move_left"]["in_bits"], segments["row_move_left"]["out_bits"]) == (16, 16)
    assert segments["row_move_left"]["packed_bytes"] == (1 << 16) * 16 // 8


@pytest.mark.slow
async def test_patch_from_another_process_reaches_the_running_server(data_dir: Path) -> None:
    async with running_server(data_dir, reference=False, refresh_interval=0.05) as srv:
        runner = srv.runners.runner("2048")
        assert isinstance(runner, EmulatedRunner)
        row = 0x0011  # [1, 1, 0, 0] -> [2, 0, 0, 0]
        assert int(runner["row_move_left"](np.array([row]))[0]) == 0x0002
        # What `simulacra apps patch 2048 row_move_left 17=3` does: its own store, on disk.
        other = SegmentStore(G2048, data_dir)
        assert await asyncio.to_thread(other.patch, "row_move_left", {row: 0x0003}) == 1
        await wait_until(lambda: runner.versions["row_move_left"] == 1, "the patch to load")
        assert int(runner["row_move_left"](np.array([row]))[0]) == 0x0003
        seg = (await get_status(srv))["apps"]["2048"]["segments"]["row_move_left"]
        assert seg["version"] == 1
        assert seg["patches"] == [{"version": 1, "count": 1, "pairs": [[row, 3]]}]


class HeldBack:
    """A runner loader that answers 2048 at once and holds sand until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, app_cls: type[App], data_dir: Path, progress: bool) -> SegmentRunner:
        if app_cls.name == "sand":
            self.started.set()
            self.release.wait(DEADLINE_S)
        return reference_runner(app_cls.segments)


async def test_hello_waits_for_an_app_still_compiling(tmp_path: Path) -> None:
    held = HeldBack()
    try:
        async with (
            running_server(tmp_path, load_runner=held) as srv,
            ProtoClient.open(srv, srv.admin_token) as c,
        ):
            assert (await get_status(srv))["apps"]["sand"]["state"] == "not loaded"
            hello = asyncio.create_task(c.hello(app="sand"))
            await wait_until(held.started.is_set, "the sand build to start")
            assert (await get_status(srv))["apps"]["sand"]["state"] == "compiling"
            assert not hello.done()
            held.release.set()
            welcome = await hello
            assert isinstance(welcome, Welcome) and welcome.app == "sand"
            assert (await c.frame()).keyframe
            assert srv.runners.ready("sand")
    finally:
        held.release.set()


async def test_hello_gives_up_on_a_long_compile_with_a_clear_error(tmp_path: Path) -> None:
    held = HeldBack()
    try:
        async with (
            running_server(tmp_path, load_runner=held, compile_wait=0.1) as srv,
            ProtoClient.open(srv, srv.admin_token) as c,
        ):
            await c.send(Hello(client="test/0", app="sand", session="", mode="tiles"))
            err = await c.recv_unchecked()
            assert err == Error(
                code=ErrorCode.SERVER_ERROR,
                message="app sand is still compiling its emulators (first start); "
                "try again shortly",
            )
            with pytest.raises(ConnectionClosed):
                while True:
                    await c.ws.recv()
            assert c.ws.close_code == 4500
            await wait_until(lambda: srv.connection_count == 0, "the link to close")
            # The build goes on for the next one.
            assert srv.runners.state("sand") == "compiling"
    finally:
        held.release.set()


class Broken:
    """A runner loader whose sand build fails once, then works."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, app_cls: type[App], data_dir: Path, progress: bool) -> SegmentRunner:
        if app_cls.name == "sand":
            self.calls += 1
            if self.calls == 1:
                raise CorruptArtifact("sand_rule.emu: bad checksum")
        return reference_runner(app_cls.segments)


async def test_a_failed_build_is_reported_then_retried(tmp_path: Path) -> None:
    async with running_server(tmp_path, load_runner=Broken()) as srv:
        async with ProtoClient.open(srv, srv.admin_token) as c:
            await c.send(Hello(client="test/0", app="sand", session="", mode="tiles"))
            err = await c.recv_unchecked()
            assert err == Error(
                code=ErrorCode.SERVER_ERROR,
                message="app sand is unavailable: sand_rule.emu: bad checksum",
            )
        sand = (await get_status(srv))["apps"]["sand"]
        assert sand == {
            "state": "failed",
            "mode": "reference",
            "error": "sand_rule.emu: bad checksum",
        }
        async with ProtoClient.open(srv, srv.admin_token) as c:
            assert (await c.hello(app="sand")).app == "sand"
        assert (await get_status(srv))["apps"]["sand"]["state"] == "ready"


class Refreshing(dict):  # type: ignore[type-arg]
    """A reference runner that reports a patched segment on every other refresh."""

    def __init__(self, app_cls: type[App]) -> None:
        super().__init__(reference_runner(app_cls.segments))
        self.refreshes = 0

    def refresh(self) -> list[str]:
        self.refreshes += 1
        return ["row_move_left"] if self.refreshes % 2 else []


async def test_refresh_runs_off_the_loop_and_patched_apps_redraw(tmp_path: Path) -> None:
    runners: dict[str, Refreshing] = {}

    def load(app_cls: type[App], data_dir: Path, progress: bool) -> SegmentRunner:
        runners[app_cls.name] = Refreshing(app_cls)
        return runners[app_cls.name]

    async with running_server(tmp_path, load_runner=load, refresh_interval=0.01) as srv:
        async with ProtoClient.open(srv, srv.admin_token) as c:
            await c.hello()
            await c.frame()
            assert srv.sessions is not None
            (session,) = srv.sessions.sessions.values()
            redraws: list[int] = []
            session.redraw = lambda: redraws.append(1)  # type: ignore[method-assign]
            await wait_until(lambda: len(redraws) >= 2, "two redraws")
            assert runners["2048"].refreshes >= 3


@pytest.mark.slow
async def test_watching_sand_is_served_by_its_emulator(
    tmp_path: Path, compiled_emulators: Any
) -> None:
    data = compiled_emulators.copy_into(tmp_path, "2048", "sand")
    async with running_server(data, reference=False) as srv:
        opts = ClientOptions(srv.url, srv.admin_token, transport="ws", app="sand", seconds=1.5)
        report = await HeadlessClient(opts).run()
        status = await get_status(srv)
    assert report["mismatches"] == 0 and report["verified"] >= 5
    rule = status["apps"]["sand"]["segments"]["sand_rule"]
    assert rule["queries"] > 0 and rule["fallbacks"] == 0 and rule["verified"] == "exhaustive"


@pytest.mark.slow
async def test_shared_file_viewer_renders_through_emulators(data_dir: Path) -> None:
    """The viewer app is an app like the others: its glyph segment answers from an emulator."""
    from simulacra.client.files_api import FilesClient

    async with running_server(data_dir, reference=False) as srv:
        assert isinstance(srv.runners.runner("viewer"), EmulatedRunner)
        alice, bob = srv.add_user("alice"), srv.add_user("bob", role="view")
        async with FilesClient(srv.url, alice) as a:
            entry = await a.put(b"hello from the viewer\n" * 40, name="hello.txt")
            code = (await a.share(entry["id"], to="bob", rights="view"))["code"]
        opts = ClientOptions(srv.url, bob, transport="ws", moves=4, open_code=code, seed=1)
        report = await HeadlessClient(opts).run()
        assert report["mismatches"] == 0 and report["verified"] >= 1
        status = await get_status(srv)
    glyph = status["apps"]["viewer"]["segments"]["glyph"]
    assert glyph["queries"] > 0 and glyph["fallbacks"] == 0
    assert glyph["verified"] == "exhaustive"


async def test_status_shows_other_users_sessions_only_to_the_admin(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        carol = srv.add_user("carol")
        dave = srv.add_user("dave")
        report = await HeadlessClient(ClientOptions(srv.url, carol, transport="ws", moves=2)).run()
        assert report["mismatches"] == 0

        async def sessions_seen_by(token: str) -> list[str]:
            reply = await http_get(srv.url + "/api/status", {"Authorization": f"Bearer {token}"})
            assert reply.status == 200, reply.body
            return [s["name"] for s in json.loads(reply.body)["sessions"]]

        assert "carol/2048" in await sessions_seen_by(srv.admin_token)
        assert "carol/2048" in await sessions_seen_by(carol)
        assert await sessions_seen_by(dave) == []
