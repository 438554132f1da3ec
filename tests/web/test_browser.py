"""The browser client end to end: Chromium, the real server, 2048, over WebRTC and WebSocket.

Set SIMULACRA_UPDATE_SCREENSHOTS=1 to refresh docs/img/2048.png from the WebRTC run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "2048.png"
CONNECT_MS = 20_000
# Chromium hides host candidates behind mDNS names by default; aioice resolves
# those with a process-wide lock bound to the first event loop that used it, so
# a second test (a new loop) would fail. Plain IP candidates avoid mDNS.
SHOW_LOCAL_IPS = "--disable-features=WebRtcHideLocalIpsWithMdns"
MOVE_MS = 3_000

# A hash of the canvas pixels as the user sees them, and how many colours it holds.
CANVAS_HASH = """() => {
  const c = document.getElementById("screen");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let h = 0x811c9dc5;
  const colours = new Set();
  for (let i = 0; i < d.length; i += 4) {
    h = Math.imul(h ^ d[i] ^ (d[i + 1] << 8) ^ (d[i + 2] << 16), 16777619) >>> 0;
    if (colours.size < 64) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
  }
  return [h, colours.size, c.width, c.height];
}"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Any]:
    srv_mod = pytest.importorskip("simulacra.server")
    config = srv_mod.ServerConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "data", app="2048")
    async with srv_mod.Server(config) as srv:
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


async def streaming(page: Any, transport: str) -> None:
    """Wait until frames arrive over `transport` and the picture is verified."""
    await page.wait_for_function(
        f"""() => {{
          const s = window.simulacra;
          if (s && s.state === "closed") throw new Error("client closed: " + s.closeReason);
          return s && s.transport === "{transport}" && s.frames >= 1 && s.checksumOk === true;
        }}""",
        timeout=CONNECT_MS,
    )


async def move_changes_board(page: Any) -> bool:
    """Press arrows until the canvas changes; 2048 may refuse a move, not all four."""
    before = (await page.evaluate(CANVAS_HASH))[0]
    for key in ("ArrowLeft", "ArrowUp", "ArrowRight", "ArrowDown"):
        await page.keyboard.press(key)
        try:
            await page.wait_for_function(
                f"() => ({CANVAS_HASH})()[0] !== {before}", timeout=MOVE_MS, polling=50
            )
            return True
        except Exception as exc:  # Playwright's TimeoutError: this direction did nothing
            if "Timeout" not in type(exc).__name__:
                raise
    return False


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
    state = await page.evaluate("() => JSON.parse(JSON.stringify(window.simulacra))")
    assert state["mismatches"] == 0
    assert state["state"] == "streaming"
    assert state["app"] == "2048"
    return state


async def test_webrtc_session(server: Any, browser: Any, tmp_path: Path) -> None:
    page = await open_client(browser, server)
    state = await check_session(page, "webrtc")
    assert state["fallbackReason"] == ""
    assert await page.text_content("#status") == "webrtc"
    shot = tmp_path / "2048.png"
    await page.screenshot(path=str(shot))
    if os.environ.get("SIMULACRA_UPDATE_SCREENSHOTS"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


async def test_websocket_transport(server: Any, browser: Any) -> None:
    page = await open_client(browser, server, "&transport=ws")
    await check_session(page, "ws")
    assert await page.text_content("#status") == "ws"


# Answers never reach the peer connection, so the data channel cannot open.
STALL_WEBRTC = """
  RTCPeerConnection.prototype.setRemoteDescription = function () { return new Promise(() => {}); };
"""


async def test_falls_back_to_websocket(server: Any, browser: Any) -> None:
    page = await browser.new_page()
    await page.add_init_script(STALL_WEBRTC)
    await page.goto(f"{server.url}/?token={server.admin_token}")
    await check_session(page, "ws")
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
        if msg[1] != 4:
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
    status = await page.text_content("#status")
    assert status is not None and status.startswith("closed: ")
