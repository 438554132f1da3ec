"""The browser client end to end: Chromium, the real server, over WebRTC and WebSocket.

Covers web/client.js with carriers.js and backoff.js: transports and fallback,
checksums, the connect form, the app picker and sand's pointer and material
input, scaling, reload, reconnect with backoff, and the stats overlay.

Set SIMULACRA_UPDATE_SCREENSHOTS=1 to refresh docs/img/2048.png and sand.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from browser_testkit import (
    CANVAS_HASH,
    COLOUR_COUNT,
    CONNECT_MS,
    SHOW_LOCAL_IPS,
    client_state,
    move_changes_board,
    picture_is_exact,
    running_server,
    streaming,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IMG_DIR = Path(__file__).resolve().parents[2] / "docs" / "img"
WALL = (128, 128, 136)  # apps/sand.py's wall colour
SAND_GRID_PX = 384  # rows above sand's material bar


def keep_screenshot(shot: Path, name: str) -> None:
    if UPDATE_SCREENSHOTS:
        IMG_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, IMG_DIR / name)


UPDATE_SCREENSHOTS = bool(os.environ.get("SIMULACRA_UPDATE_SCREENSHOTS"))


def emulated_data_dir(tmp_path: Path, cache: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(cache / "emulators", data / "emulators")
    return data


@pytest.fixture
async def server(tmp_path: Path, emulator_cache: Any) -> AsyncIterator[Any]:
    """2048 on reference code; emulated when refreshing the README's screenshots."""
    pytest.importorskip("simulacra.server")
    if UPDATE_SCREENSHOTS:
        data = emulated_data_dir(tmp_path, emulator_cache("2048"))
        async with running_server(data, reference=False) as srv:
            yield srv
        return
    async with running_server(tmp_path / "data") as srv:
        yield srv


@pytest.fixture
async def sand_server(tmp_path: Path, emulator_cache: Any) -> AsyncIterator[Any]:
    """``simulacra serve --app sand``, its rule running through its compiled emulator."""
    pytest.importorskip("simulacra.server")
    data = emulated_data_dir(tmp_path, emulator_cache("sand"))
    async with running_server(data, app="sand", reference=False) as srv:
        yield srv


@pytest.fixture
async def browser(tmp_path: Path, chromium_options: dict[str, Any]) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            **{**chromium_options, "args": [*chromium_options["args"], SHOW_LOCAL_IPS]},
            viewport={"width": 640, "height": 720},
        )
        try:
            yield context
        finally:
            await context.close()


async def open_client(browser: Any, server: Any, query: str = "") -> Any:
    page = await browser.new_page()
    await page.goto(f"{server.url}/?token={server.admin_token}{query}")
    return page


async def check_session(page: Any, transport: str) -> dict[str, Any]:
    await streaming(page, transport)
    h, colours, width, height = await page.evaluate(CANVAS_HASH)
    assert (width, height) != (16, 16), "canvas never took the framebuffer's size"
    assert colours >= 3, "canvas looks blank"
    assert await move_changes_board(page), "no arrow key changed the board"
    # the Frame answering the move carries its input_seq: a latency sample exists
    await page.wait_for_function(
        "() => window.simulacra.stats.latencyP50Ms !== null && window.simulacra.checksumOk",
        timeout=CONNECT_MS,
    )
    state = await client_state(page)
    assert state["mismatches"] == 0
    assert state["state"] == "streaming"
    assert state["app"] == "2048"
    return state


async def test_webrtc_session(server: Any, browser: Any, tmp_path: Path) -> None:
    page = await open_client(browser, server)
    state = await check_session(page, "webrtc")
    # Acks are cumulative and the last one is never left owed: once the page is idle the
    # server holds no frame of it unacknowledged, with at most one Ack per frame sent.
    for _ in range(500):  # 5 s at most; the owed Ack goes within 50 ms of the last frame
        viewers = [v for s in server.sessions.sessions.values() for v in s.viewers]
        if viewers and all(v.in_flight == 0 for v in viewers):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError(f"frames left unacknowledged: {[v.in_flight for v in viewers]}")
    acked = await client_state(page)
    assert 1 <= acked["stats"]["acks"] <= acked["frames"]
    assert state["fallbackReason"] == ""
    assert state["mode"] == "packed"  # the default: PackedFrames through one deflate stream
    assert await page.text_content("#status") == "webrtc"
    # the overlay reads /api/status: 2048's 3 segments, on reference code unless emulated
    await page.wait_for_function(
        "() => document.getElementById('stat-segments').textContent !== '-'", timeout=CONNECT_MS
    )
    text = await page.text_content("#stat-segments")
    if UPDATE_SCREENSHOTS:
        assert text is not None and text.startswith("3 · ")
    else:
        assert text == "none of 3 (reference)"
    shot = tmp_path / "2048.png"
    await page.screenshot(path=str(shot))
    keep_screenshot(shot, "2048.png")


def host_candidate_ports(sdp: str) -> set[int]:
    """Ports of the host candidates in an SDP (``a=candidate:… <ip> <port> typ host``)."""
    ports = set()
    for line in sdp.splitlines():
        fields = line.split()
        if line.startswith("a=candidate:") and fields[6:8] == ["typ", "host"]:
            ports.add(int(fields[5]))
    return ports


async def test_webrtc_session_with_a_stun_server(
    tmp_path: Path, browser: Any, stun_server: Any
) -> None:
    async with running_server(tmp_path / "data", ice_servers=(stun_server.url,)) as srv:
        page = await open_client(browser, srv)
        await streaming(page, "webrtc")
        state = await client_state(page)
        assert (state["fallbackReason"], state["mismatches"]) == ("", 0)
        (peer,) = srv._peers  # noqa: SLF001
        ours = host_candidate_ports(peer.pc.localDescription.sdp)
    # Both peers asked the STUN server: ours from its host candidates, Chromium from others.
    asked_from = {port for _, port in stun_server.sources}
    assert asked_from & ours
    assert asked_from - ours, "Chromium sent no STUN request"


async def test_bad_ice_list_falls_back_to_websocket(server: Any, browser: Any) -> None:
    page = await browser.new_page()

    async def signal(route: Any) -> None:
        if "transport=webrtc" in route.url:
            route.send(json.dumps({"type": "ice", "iceServers": [{"urls": "http://x"}]}))
        else:
            route.connect_to_server()

    await page.route_web_socket(re.compile(r".*/signal\?.*"), signal)
    await page.goto(f"{server.url}/?token={server.admin_token}")
    await streaming(page, "ws")
    reason = await page.evaluate("() => window.simulacra.fallbackReason")
    assert reason == 'bad ICE server list: not a stun:, stuns:, turn: or turns: URL: "http://x"'


TOUCH_SWIPE_RIGHT = """() => {
  const c = document.getElementById("screen");
  const r = c.getBoundingClientRect();
  const at = (type, dx, buttons) => c.dispatchEvent(new PointerEvent(type, {
    pointerId: 7, pointerType: "touch", isPrimary: true, bubbles: true, buttons,
    clientX: r.left + r.width / 4 + dx, clientY: r.top + r.height / 2 }));
  at("pointerdown", 0, 1);
  at("pointerup", r.width / 2, 0);
}"""


async def test_websocket_transport_and_app_picker(server: Any, browser: Any) -> None:
    page = await open_client(browser, server, "&transport=ws")
    await check_session(page, "ws")
    assert await page.text_content("#status") == "ws"
    # a touch swipe to the right is an ArrowRight, besides its two pointer Inputs
    before = (await client_state(page))["stats"]["inputs"]
    await page.evaluate(TOUCH_SWIPE_RIGHT)
    after = (await client_state(page))["stats"]["inputs"]
    assert (after["key"] - before["key"], after["pointer"] - before["pointer"]) == (1, 2)
    options = await page.eval_on_selector_all("#app-picker option", "os => os.map(o => o.value)")
    assert options == ["2048", "sand"]
    assert not await page.is_visible("#tools")
    # the picker reconnects with Hello.app = sand, and the URL remembers it for a reload
    await page.select_option("#app-picker", "sand")
    await streaming(page, "ws", app="sand")
    assert "app=sand" in page.url
    assert await page.is_visible("#tools")
    state = await client_state(page)
    assert (state["width"], state["height"], state["mismatches"]) == (512, 400, 0)


# Answers never reach the peer connection, so the data channel cannot open.
STALL_WEBRTC = """
  RTCPeerConnection.prototype.setRemoteDescription = function () { return new Promise(() => {}); };
"""


async def test_falls_back_to_websocket(server: Any, browser: Any) -> None:
    page = await browser.new_page()
    await page.add_init_script(STALL_WEBRTC)
    await page.goto(f"{server.url}/?token={server.admin_token}&mode=tiles")
    state = await check_session(page, "ws")
    assert state["mode"] == "tiles"  # plain Frames, as before packed mode
    assert await page.text_content("#status") == "ws fallback"
    reason = await page.evaluate("() => window.simulacra.fallbackReason")
    assert reason == "data channel not open within 4 s"


async def test_checksum_mismatch_asks_for_keyframe(server: Any, browser: Any) -> None:
    import msgpack

    frames_seen = 0

    def corrupt_second_frame(data: str | bytes) -> str | bytes:
        nonlocal frames_seen
        if isinstance(data, str):
            return data
        msg = msgpack.unpackb(data)
        if msg[1] not in (4, 9):  # Frame, PackedFrame
            return data
        frames_seen += 1
        if frames_seen != 2:
            return data
        msg[-1] ^= 1  # the checksum: the picture is right, the sum is not
        return msgpack.packb(msg, use_bin_type=True)

    def route(ws: Any) -> None:
        upstream = ws.connect_to_server()
        upstream.on_message(lambda data: ws.send(corrupt_second_frame(data)))

    page = await browser.new_page()
    await page.route_web_socket("**/signal?*", route)
    await page.goto(f"{server.url}/?token={server.admin_token}&transport=ws")
    await streaming(page, "ws")
    await move_changes_board(page)
    # the bad frame is counted, a Resync goes out, and the keyframe answering it verifies
    await page.wait_for_function(
        """() => window.simulacra.mismatches === 1 && window.simulacra.stats.resyncs === 1
              && window.simulacra.checksumOk === true""",
        timeout=CONNECT_MS,
    )
    assert frames_seen >= 3


async def test_bad_token_closes_with_reason(server: Any, browser: Any) -> None:
    page = await browser.new_page()
    await page.goto(f"{server.url}/?token=not-a-token")
    await page.wait_for_function("() => window.simulacra.state === 'closed'", timeout=CONNECT_MS)
    assert await page.text_content("#status") == "closed: invalid token"
    # a refused token is final: no retry, the connect form asks for another
    assert await page.is_visible("#connect")
    assert "refused" in (await page.text_content("#connect-error") or "")
    assert (await client_state(page))["reconnectDelays"] == []


async def test_connect_form_remembers_only_when_asked(server: Any, browser: Any) -> None:
    token = server.admin_token
    page = await browser.new_page()
    await page.goto(f"{server.url}/?transport=ws")
    await page.wait_for_selector("#connect", state="visible")
    # not remembered: this tab keeps it (a reload reconnects), localStorage does not
    await page.fill("#connect-token", token)
    await page.click("#connect-form button[type=submit]")
    await streaming(page, "ws")
    assert await page.evaluate("() => localStorage.getItem('simulacra.token')") is None
    await page.reload()
    await streaming(page, "ws")
    other = await browser.new_page()
    await other.goto(f"{server.url}/?transport=ws")
    await other.wait_for_selector("#connect", state="visible")
    # remembered: a new tab connects without asking
    await other.fill("#connect-token", token)
    await other.check("#connect-remember")
    await other.click("#connect-form button[type=submit]")
    await streaming(other, "ws")
    assert await other.evaluate("() => localStorage.getItem('simulacra.token')") == token
    third = await browser.new_page()
    await third.goto(f"{server.url}/?transport=ws")
    await streaming(third, "ws")
    assert not await third.is_visible("#connect")
    # signing out forgets it everywhere it was kept
    await third.click("#sign-out")
    await third.wait_for_selector("#connect", state="visible")
    assert await third.evaluate("() => localStorage.getItem('simulacra.token')") is None
    assert (await client_state(third))["state"] == "closed"


async def test_sand_materials_and_pointer(sand_server: Any, browser: Any, tmp_path: Path) -> None:
    page = await open_client(browser, sand_server)
    await streaming(page, "webrtc", app="sand")
    assert await page.is_visible("#tools")
    # sand's rule runs through one emulated segment: the overlay counts it and its size
    await page.wait_for_function(
        "() => /^1 · [0-9.]+ kB$/.test(document.getElementById('stat-segments').textContent)",
        timeout=CONNECT_MS,
    )
    summary = (await client_state(page))["segments"]
    assert summary["mode"] == "emulated" and summary["count"] == 1 and summary["bytes"] > 0
    assert summary["fallbacks"] == 0

    await page.click("#materials button[data-material=water]")
    await page.keyboard.press("3")  # sand's own key for wall
    assert await page.get_attribute("#materials [data-material=wall]", "aria-checked") == "true"
    assert (await client_state(page))["stats"]["inputs"]["select"] == 2

    walls = await page.evaluate(COLOUR_COUNT, [*WALL, SAND_GRID_PX])
    box = await page.locator("#screen").bounding_box()
    assert box is not None
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.15
    await page.mouse.move(x0, y0)
    await page.mouse.down()
    await page.mouse.move(x0 + box["width"] * 0.4, y0, steps=20)
    await page.mouse.up()
    # a wall drawn across the top: each pour paints a disc of up to 13 cells of 4x4 pixels
    await page.wait_for_function(
        f"() => ({COLOUR_COUNT})([{WALL[0]}, {WALL[1]}, {WALL[2]}, {SAND_GRID_PX}]) > {walls + 16 * 40}",
        timeout=CONNECT_MS,
    )

    # a button held still keeps pouring
    held = (await client_state(page))["stats"]["inputs"]["pointer"]
    await page.mouse.move(x0, y0 + box["height"] * 0.3)
    await page.mouse.down()
    await page.wait_for_function(
        f"() => window.simulacra.stats.inputs.pointer >= {held + 4}", timeout=CONNECT_MS
    )
    await page.mouse.up()

    # a burst of moves within one task sends at most one Input; the rest wait their turn
    sent = await page.evaluate(
        """() => {
          const c = document.getElementById("screen");
          const r = c.getBoundingClientRect();
          const before = window.simulacra.stats.inputs.pointer;
          for (let i = 0; i < 200; i++) {
            c.dispatchEvent(new PointerEvent("pointermove", {
              clientX: r.left + 10 + i, clientY: r.top + 200, buttons: 1, bubbles: true }));
          }
          return [before, window.simulacra.stats.inputs.pointer];
        }"""
    )
    assert sent[1] - sent[0] <= 1
    await page.wait_for_function(
        f"() => window.simulacra.stats.inputs.pointer >= {sent[0] + 1}", timeout=CONNECT_MS
    )
    await streaming(page, "webrtc", app="sand")
    state = await client_state(page)
    assert state["stats"]["inputs"]["pointer"] <= sent[0] + 2
    assert state["mismatches"] == 0
    shot = tmp_path / "sand.png"
    await page.screenshot(path=str(shot))
    keep_screenshot(shot, "sand.png")


BACKING_SIZE = (
    "() => [document.getElementById('screen').width, document.getElementById('screen').height]"
)


async def test_resize_keeps_the_picture_exact(server: Any, browser: Any) -> None:
    page = await open_client(browser, server, "&transport=ws")
    await streaming(page, "ws")
    assert await picture_is_exact(page)
    backing = await page.evaluate(BACKING_SIZE)
    for viewport, integer in (
        ({"width": 1280, "height": 1400}, True),
        ({"width": 360, "height": 420}, False),
    ):
        before = await page.evaluate("() => document.getElementById('screen').style.width")
        await page.set_viewport_size(viewport)
        await page.wait_for_function(
            f"() => document.getElementById('screen').style.width !== {json.dumps(before)}",
            timeout=CONNECT_MS,
        )
        scale = (await client_state(page))["scale"]
        assert (scale == int(scale) and scale >= 2) if integer else scale < 1
        css = await page.evaluate(
            "() => getComputedStyle(document.getElementById('screen')).imageRendering"
        )
        assert css == "pixelated"
        # the backing store keeps the framebuffer's size; only CSS scales it
        assert await page.evaluate(BACKING_SIZE) == backing
        assert await picture_is_exact(page)
    assert (await client_state(page))["mismatches"] == 0


async def test_reload_reconnects(server: Any, browser: Any) -> None:
    page = await open_client(browser, server)
    await streaming(page, "webrtc")
    await page.reload()
    await streaming(page, "webrtc")
    state = await client_state(page)
    assert state["mismatches"] == 0
    assert await picture_is_exact(page)


async def test_server_restart_reconnects_with_backoff(tmp_path: Path, browser: Any) -> None:
    data = tmp_path / "data"
    async with running_server(data) as srv:
        port, token, url = srv.port, srv.admin_token, srv.url
        page = await browser.new_page()
        await page.goto(f"{url}/?token={token}&transport=ws")
        await streaming(page, "ws")
    # the server said why it went away; the client shows it and retries after 1 s
    await page.wait_for_function(
        """() => window.simulacra.closeReason.endsWith("server shutting down")
              && document.getElementById("status").textContent.includes(
                   "server shutting down · reconnecting in 1 s…")""",
        timeout=CONNECT_MS,
    )
    # the first retry finds nobody: the next wait doubles
    await page.wait_for_function(
        """() => window.simulacra.reconnectAttempt >= 2
              && document.getElementById("status").textContent.includes("reconnecting in")""",
        timeout=CONNECT_MS,
    )
    async with running_server(data, port=port):
        await streaming(page, "ws")
        state = await client_state(page)
    assert state["reconnectDelays"][:2] == [1000, 2000]
    assert state["mismatches"] == 0


SEGMENTS_STATUS = {
    "apps": {
        "2048": {
            "mode": "emulated",
            "state": "ready",
            "segments": {
                "glyph": {
                    "bytes": 5200,
                    "packed_bytes": 16384,
                    "verified": "exhaustive",
                    "in_bits": 15,
                    "out_bits": 4,
                    "queries": 10,
                    "fallbacks": 0,
                },
                "row_move_left": {
                    "bytes": 7100,
                    "packed_bytes": 131072,
                    "verified": "exhaustive",
                    "in_bits": 16,
                    "out_bits": 16,
                    "queries": 4,
                    "fallbacks": 0,
                },
            },
        }
    },
    "default_app": "2048",
}


async def test_overlay_shows_emulated_segments(server: Any, browser: Any) -> None:
    page = await browser.new_page()
    seen: list[str | None] = []

    async def fake_status(route: Any) -> None:
        seen.append(route.request.headers.get("authorization"))
        await route.fulfill(status=200, json=SEGMENTS_STATUS)

    await page.route("**/api/status", fake_status)
    await page.goto(f"{server.url}/?token={server.admin_token}&transport=ws")
    await streaming(page, "ws")
    await page.wait_for_function(
        "() => document.getElementById('stat-segments').textContent === '2 · 12.3 kB'",
        timeout=CONNECT_MS,
    )
    assert seen and seen[0] == f"Bearer {server.admin_token}"
    summary = (await client_state(page))["segments"]
    assert summary["count"] == 2 and summary["bytes"] == 12300 and summary["fallbacks"] == 0


async def test_view_role_input_is_refused_and_the_stream_goes_on(server: Any, browser: Any) -> None:
    carol = server.add_user("carol", role="view")
    page = await browser.new_page()
    await page.goto(f"{server.url}/?token={carol}&transport=ws")
    await streaming(page, "ws")
    assert (await client_state(page))["role"] == "view"
    await page.keyboard.press("ArrowLeft")
    await page.wait_for_function(
        "() => document.getElementById('status').textContent.includes('input refused')",
        timeout=CONNECT_MS,
    )
    # refused once: the client stops sending, and keeps streaming
    await page.keyboard.press("ArrowRight")
    state = await client_state(page)
    assert state["stats"]["inputs"]["key"] == 1
    assert state["state"] == "streaming" and state["mismatches"] == 0
    assert await picture_is_exact(page)
