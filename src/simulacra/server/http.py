"""Plain HTTP on the signaling port: static client files, health, status.

::

    GET /            ─► web/index.html
    GET /<file>      ─► web/<file>     (known types only, never outside web/)
    GET /healthz     ─► 200 "ok" once ready, 503 before
    GET /api/status  ─► JSON            (Authorization: Bearer T)
    GET /signal?...  ─► WebSocket upgrade (see signaling.py)

Replies are plain values (``HttpReply``); ``to_response`` turns one into the
websockets handshake ``Response`` that answers instead of an upgrade.
"""

from __future__ import annotations

import email.utils
import json
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from websockets.datastructures import Headers
from websockets.http11 import Response

__all__ = [
    "HttpReply",
    "CONTENT_TYPES",
    "MAX_STATIC_BYTES",
    "text_reply",
    "json_reply",
    "static_reply",
    "to_response",
    "default_web_root",
]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
}
MAX_STATIC_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    content_type: str
    body: bytes
    cache: str = "no-cache"  # the client is small; always revalidate after an upgrade


def text_reply(status: int, text: str) -> HttpReply:
    """A one-line plain text reply (errors say what went wrong in one line)."""
    return HttpReply(status, "text/plain; charset=utf-8", (text.rstrip("\n") + "\n").encode())


def json_reply(obj: Any, status: int = 200) -> HttpReply:
    return HttpReply(status, "application/json", json.dumps(obj, sort_keys=True).encode())


def default_web_root() -> Path:
    """The browser client shipped inside the package: ``simulacra/web``."""
    return Path(__file__).resolve().parent.parent / "web"


def static_reply(web_root: Path, url_path: str) -> HttpReply:
    """The file under ``web_root`` that ``url_path`` names, or a 404 (blocking: file I/O)."""
    rel = unquote(url_path).lstrip("/") or "index.html"
    not_found = text_reply(404, f"not found: {url_path[:200]}")
    # Reject anything that could climb out of web_root before touching the disk.
    parts = rel.split("/")
    if any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
        return not_found
    root = web_root.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        return not_found
    content_type = CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None or not path.is_file():
        return not_found
    try:
        size = path.stat().st_size
        if size > MAX_STATIC_BYTES:
            return text_reply(413, f"file too big: {url_path[:200]}")
        body = path.read_bytes()
    except OSError:
        return not_found
    return HttpReply(200, content_type, body)


def to_response(reply: HttpReply) -> Response:
    status = HTTPStatus(reply.status)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(reply.body))),
            ("Content-Type", reply.content_type),
            ("Cache-Control", reply.cache),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(status.value, status.phrase, headers, reply.body)
