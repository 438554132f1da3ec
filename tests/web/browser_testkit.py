"""Helpers for the end-to-end browser tests: a real server, Chromium pages, checks.

Apps run on their reference code (``reference=True``): these tests are about
the browser client; compiling emulators belongs to the server and apps tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

CONNECT_MS = 20_000
MOVE_MS = 3_000
# Chromium hides host candidates behind mDNS names by default; aioice resolves
# those with a process-wide lock bound to the first event loop that used it, so
# a second test (a new loop) would fail. Plain IP candidates avoid mDNS.
SHOW_LOCAL_IPS = "--disable-features=WebRtcHideLocalIpsWithMdns"

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

# [CRC-32 of the canvas as RGB bytes, the last verified Frame checksum], read in one
# task so no frame lands in between: equal when the picture on screen is exact.
CANVAS_CRC = """async () => {
  const { crc32, FrameDecoder } = await import("/tiles.js");
  const c = document.getElementById("screen");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const rgb = new Uint8Array((d.length / 4) * 3);
  for (let i = 0, j = 0; i < d.length; i += 4, j += 3) {
    rgb[j] = d[i];
    rgb[j + 1] = d[i + 1];
    rgb[j + 2] = d[i + 2];
  }
  const s = window.simulacra;
  let crc = crc32(rgb);
  if (s.lastChecksumKind === "tile-table") {
    // The canvas through a fresh decoder's tile table, every tile marked written.
    const table = new FrameDecoder(c.width, c.height, { dictionarySlots: 0 });
    table.framebuffer.set(rgb);
    for (let i = 0; i < table.tileCount; i++) table.written.add(i);
    crc = table.tableChecksum();
  }
  return [crc, s.checksumOk ? s.lastChecksum : null];
}"""

# How many canvas pixels have colour [r, g, b] (rows above `arg.below` only).
COLOUR_COUNT = """([r, g, b, below]) => {
  const c = document.getElementById("screen");
  const d = c.getContext("2d").getImageData(0, 0, c.width, Math.min(below, c.height)).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] === r && d[i + 1] === g && d[i + 2] === b) n++;
  return n;
}"""


@asynccontextmanager
async def running_server(data_dir: Path, **overrides: Any) -> AsyncIterator[Any]:
    """The real server on a free port of 127.0.0.1 (or ``port=``), apps on reference code."""
    from simulacra.server import Server, ServerConfig

    overrides.setdefault("port", 0)
    overrides.setdefault("app", "2048")
    overrides.setdefault("reference", True)
    config = ServerConfig(host="127.0.0.1", data_dir=data_dir, **overrides)
    async with Server(config) as srv:
        yield srv


async def client_state(page: Any) -> dict[str, Any]:
    return await page.evaluate(
        "() => JSON.parse(JSON.stringify({...window.simulacra, serverStatus: null}))"
    )


async def streaming(page: Any, transport: str | None = None, app: str | None = None) -> None:
    """Wait until frames arrive (over `transport`, for `app`) and the picture is verified."""
    checks = ["s.frames >= 1", "s.checksumOk === true", "s.state === 'streaming'"]
    if transport:
        checks.append(f"s.transport === {transport!r}")
    if app:
        checks.append(f"s.app === {app!r}")
    await page.wait_for_function(
        f"""() => {{
          const s = window.simulacra;
          if (s && s.state === "closed") throw new Error("client closed: " + s.closeReason);
          return s && {" && ".join(checks)};
        }}""",
        timeout=CONNECT_MS,
    )


async def picture_is_exact(page: Any) -> bool:
    """The canvas, read back, hashes to the checksum of the last verified frame."""
    crc, verified = await page.evaluate(CANVAS_CRC)
    return crc == verified


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
