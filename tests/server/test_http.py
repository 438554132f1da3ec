"""Static files, plain replies and request parsing."""

from __future__ import annotations

from pathlib import Path

from simulacra.server.auth import bearer_token, query_params
from simulacra.server.http import (
    HttpReply,
    default_web_root,
    json_reply,
    static_reply,
    text_reply,
    to_response,
)


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_bytes(b"<!doctype html>")
    (root / "client.js").write_bytes(b"export {};")
    (root / "style.css").write_bytes(b"body{}")
    (root / "sub" / "a.svg").write_bytes(b"<svg/>")
    (root / "notes.py").write_bytes(b"secret = 1")
    (tmp_path / "secret.txt").write_bytes(b"outside")
    return root


def test_static_files_and_types(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    assert static_reply(root, "/") == HttpReply(200, "text/html; charset=utf-8", b"<!doctype html>")
    assert static_reply(root, "/client.js").content_type == "text/javascript; charset=utf-8"
    assert static_reply(root, "/style.css").content_type == "text/css; charset=utf-8"
    assert static_reply(root, "/sub/a.svg") == HttpReply(200, "image/svg+xml", b"<svg/>")


def test_no_traversal_no_unknown_types(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    for path in (
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "//etc/passwd",
        "/sub/",
        "/notes.py",
        "/missing.js",
        "/sub\\..\\index.html",
    ):
        reply = static_reply(root, path)
        assert reply.status == 404, path
        assert reply.body.startswith(b"not found: ")


def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    assert static_reply(root, "/leak.txt").status == 404


def test_replies_and_response() -> None:
    assert text_reply(401, "invalid token") == HttpReply(
        401, "text/plain; charset=utf-8", b"invalid token\n"
    )
    assert json_reply({"b": 1, "a": [2]}).body == b'{"a": [2], "b": 1}'
    response = to_response(text_reply(404, "nope"))
    assert (response.status_code, response.reason_phrase, response.body) == (
        404,
        "Not Found",
        b"nope\n",
    )
    assert response.headers["Content-Length"] == "5"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_request_parsing() -> None:
    assert query_params("/signal?token=abc&transport=ws") == (
        "/signal",
        {"token": "abc", "transport": "ws"},
    )
    assert query_params("/") == ("/", {})
    assert bearer_token({"Authorization": "Bearer t0k"}) == "t0k"
    assert bearer_token({"Authorization": "bearer  t0k "}) == "t0k"
    assert bearer_token({"Authorization": "Basic abc"}) is None
    assert bearer_token({}) is None


def test_package_web_root_has_the_client() -> None:
    assert (default_web_root() / "index.html").is_file()
