"""Shared set-up for the browser tests: Debian's Chromium driven by Playwright.

The JS modules are served to the page from ``src/simulacra/web`` through
Playwright's request routing under a fake origin, so the codec tests need no
server and no network at all. End-to-end helpers live in ``browser_testkit``
(importable from here: ``--import-mode=importlib`` puts no test dir on sys.path).
"""

from __future__ import annotations

import mimetypes
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WEB_DIR = Path(__file__).resolve().parents[2] / "src" / "simulacra" / "web"
FAKE_ORIGIN = "http://simulacra.test"
# The harness page gives tests hex helpers: bytes cross the evaluate() boundary as hex.
HARNESS_HTML = """<!doctype html><html><head><meta charset="utf-8"><script>
window.fromHex = (h) => Uint8Array.from(h.match(/../g) ?? [], (b) => parseInt(b, 16));
window.toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
</script></head><body></body></html>"""


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            "browser tests need Debian's Chromium at /usr/bin/chromium (apt install chromium)"
        )
    pytest.importorskip("playwright", reason="browser tests need playwright (make install-test)")


def serve_web_file(path: str) -> tuple[int, str, bytes]:
    """(status, content type, body) for a path under the fake origin."""
    if path in ("/", "/harness.html"):
        return 200, "text/html; charset=utf-8", HARNESS_HTML.encode()
    target = (WEB_DIR / path.lstrip("/")).resolve()
    if target.parent != WEB_DIR or not target.is_file():
        return 404, "text/plain", b"not found"
    ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix == ".js":
        ctype = "text/javascript"
    return 200, ctype, target.read_bytes()


@pytest.fixture
def chromium_options() -> dict[str, Any]:
    """Keyword arguments for ``launch_persistent_context``; skips without Chromium."""
    require_chromium()
    return {"executable_path": str(CHROMIUM), "headless": True, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="module")
def js_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Chromium page on the harness, able to ``import('/tiles.js')`` and friends."""
    require_chromium()
    from playwright.sync_api import Route, sync_playwright

    def route(r: Route) -> None:
        status, ctype, body = serve_web_file(urlsplit(r.request.url).path)
        r.fulfill(status=status, content_type=ctype, body=body)

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = context.new_page()
            page.route(f"{FAKE_ORIGIN}/**", route)
            page.goto(f"{FAKE_ORIGIN}/harness.html")
            yield page
        finally:
            context.close()


@pytest.fixture(scope="module")
def js(js_page: Any) -> Callable[..., Any]:
    """``js(module, body, arg)``: run ``body`` with ``m`` = the imported module, ``arg`` passed in."""

    def run(module: str, body: str, arg: Any = None) -> Any:
        return js_page.evaluate(
            f"async (arg) => {{ const m = await import('/{module}'); {body} }}",
            arg,
        )

    return run


@pytest.fixture(scope="session")
def emulator_cache(compiled_emulators: Any) -> Callable[[str], Path]:
    """``cache(app)``: a data directory whose ``emulators/`` holds ``app``'s compiled segments.

    The run's one compile per app (``compiled_emulators``, tests/conftest.py), copied
    into each test's data directory (sand takes seconds, 2048 up to a minute on 2
    busy cores: tests use sand).
    """
    return compiled_emulators.root
