"""web/filesapi.js: the chunk header of the files API, exact bytes both ways, and its limits."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.browser

# Each example is a round trip into Chromium: no per-example deadline, fewer examples.
in_browser = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ENCODE = "return toHex(m.encodeChunk(arg[0], arg[1], fromHex(arg[2])));"
DECODE = """
  const c = m.decodeChunk(fromHex(arg));
  return [c.id, c.offset, toHex(c.payload)];
"""
ERROR = "try { {BODY} return 'no error'; } catch (e) { return [e.name, e.message]; }"


def test_header_matches_the_server(js: Any) -> None:
    api = pytest.importorskip("simulacra.server.api")
    assert api.CHUNK_HEADER.size == 12
    wire = api.CHUNK_HEADER.pack(7, 2**40 + 5) + b"abc"
    assert js("filesapi.js", ENCODE, [7, 2**40 + 5, b"abc".hex()]) == wire.hex()
    assert js("filesapi.js", DECODE, wire.hex()) == [7, 2**40 + 5, b"abc".hex()]


@in_browser
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**53 - 1),
    st.binary(max_size=64),
)
def test_round_trip(js: Any, ident: int, offset: int, payload: bytes) -> None:
    wire = struct.pack(">IQ", ident, offset) + payload
    assert js("filesapi.js", ENCODE, [ident, offset, payload.hex()]) == wire.hex()
    assert js("filesapi.js", DECODE, wire.hex()) == [ident, offset, payload.hex()]


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ("m.decodeChunk(fromHex('00000001000000'));", "FilesApiError"),
        ("m.decodeChunk(fromHex('00000001ffffffffffffffff'));", "FilesApiError"),
        ("m.encodeChunk(-1, 0, new Uint8Array());", "RangeError"),
        ("m.encodeChunk(2 ** 32, 0, new Uint8Array());", "RangeError"),
        ("m.encodeChunk(1, 2 ** 53, new Uint8Array());", "RangeError"),
    ],
)
def test_bad_chunks_are_refused(js: Any, body: str, name: str) -> None:
    assert js("filesapi.js", ERROR.replace("{BODY}", body))[0] == name


@pytest.mark.parametrize("slice_bytes", [1, 7, 64, 4096])
def test_sha256_of_a_blob_slice_by_slice(js: Any, slice_bytes: int) -> None:
    data = b"Regeneration codes, not bytes.\n" * 9
    got = js(
        "filesapi.js",
        "return m.blobSha256(new Blob([fromHex(arg[0])]), arg[1]);",
        [data.hex(), slice_bytes],
    )
    assert got == hashlib.sha256(data).hexdigest()


def test_upload_limit_is_the_servers(js: Any) -> None:
    files = pytest.importorskip("simulacra.server.files")
    assert js("filesapi.js", "return m.MAX_UPLOAD_BYTES;") == files.MAX_UPLOAD_BYTES


# Drive FilesApi.upload against a fake socket: the server's replies are fed to receive().
UPLOAD_WINDOW = """
  const sent = [];
  const api = new m.FilesApi("t");
  api.ws = { readyState: WebSocket.OPEN, send: (d) => sent.push(d) };
  const turns = async (n) => { for (let i = 0; i < n; i++) await new Promise((r) => setTimeout(r, 0)); };
  const until = async (cond) => { for (let i = 0; i < 2000 && !cond(); i++) await turns(1); return cond(); };
  const progress = [];
  const done = api.upload(new Blob([fromHex(arg)]), "f.bin", (n) => progress.push(n));
  await until(() => sent.length === 1);
  const begin = JSON.parse(sent[0]);
  api.receive(JSON.stringify({ id: begin.id, ok: true, upload: 5, chunk_bytes: 4, window: 2 }));
  await until(() => sent.length === 3);
  await turns(20);
  const inFlight = sent.length - 1;  // chunks sent before any ack
  const log = [];
  for (const offset of [4, 8, 10]) {
    api.receive(JSON.stringify({ op: "chunk_ack", upload: 5, offset }));
    await turns(20);
    log.push(sent.length);
  }
  const commit = JSON.parse(sent[sent.length - 1]);
  api.receive(JSON.stringify({ id: commit.id, ok: true, entry: { id: "e1", name: "f.bin" } }));
  const entry = await done;
  const chunks = sent.slice(1, 4).map((c) => { const d = m.decodeChunk(c); return [d.id, d.offset, toHex(d.payload)]; });
  return { begin, inFlight, log, commit: [commit.op, commit.upload], entry, chunks, progress };
"""


def test_upload_keeps_at_most_window_chunks_in_flight(js: Any) -> None:
    data = bytes(range(10))
    got = js("filesapi.js", UPLOAD_WINDOW, data.hex())
    begin = got["begin"]
    assert (begin["op"], begin["name"], begin["size"]) == ("put_begin", "f.bin", 10)
    assert begin["sha256"] == hashlib.sha256(data).hexdigest()
    # window 2 of 4-byte chunks: two go out, then one more per acknowledged chunk
    assert got["inFlight"] == 2
    assert got["log"] == [4, 4, 5]  # third chunk after the first ack; commit after the last
    assert got["commit"] == ["put_commit", 5]
    assert got["chunks"] == [
        [5, 0, data[:4].hex()],
        [5, 4, data[4:8].hex()],
        [5, 8, data[8:].hex()],
    ]
    assert got["entry"] == {"id": "e1", "name": "f.bin"}
    assert got["progress"] == [4, 8, 10, 10]


UPLOAD_REFUSED = """
  const sent = [];
  const api = new m.FilesApi("t");
  api.ws = { readyState: WebSocket.OPEN, send: (d) => sent.push(d) };
  const until = async (cond) => { for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 0)); };
  const done = api.upload(new Blob([new Uint8Array(10)]), "f.bin").then(() => "no error", (e) => [e.name, e.type, e.message]);
  await until(() => sent.length === 1);
  api.receive(JSON.stringify({ id: 1, ok: true, upload: 3, chunk_bytes: 4, window: 8 }));
  await until(() => sent.length === 4);
  api.receive(JSON.stringify({ op: "chunk_error", upload: 3, error: { type: "PayloadTooBig", message: "too big" } }));
  const result = await done;
  await until(() => sent.length === 5);
  return [result, JSON.parse(sent[4])];
"""


def test_refused_chunk_fails_the_upload_and_aborts_it(js: Any) -> None:
    result, abort = js("filesapi.js", UPLOAD_REFUSED)
    assert result == ["FilesApiError", "PayloadTooBig", "too big"]
    assert (abort["op"], abort["upload"]) == ("put_abort", 3)


DOWNLOAD = """
  const sent = [];
  const api = new m.FilesApi("t");
  api.ws = { readyState: WebSocket.OPEN, send: (d) => sent.push(d) };
  const [hex, sha] = arg;
  const bytes = fromHex(hex);
  const got = api.download("e1", "text/plain").then(
    async (blob) => ["ok", toHex(new Uint8Array(await blob.arrayBuffer()))],
    (e) => [e.name, e.type, e.message]);
  const req = JSON.parse(sent[0]);
  const entry = { id: "e1", size: bytes.length, sha256: sha };
  api.receive(JSON.stringify({ id: req.id, ok: true, entry, start: 0, end: bytes.length, size: bytes.length }));
  await new Promise((r) => setTimeout(r, 0));
  for (let at = 0; at < bytes.length; at += 3) {
    api.receive(m.encodeChunk(req.id, at, bytes.subarray(at, at + 3)).buffer);
  }
  return [req.op, req.entry, await got];
"""


def test_download_reassembles_and_checks_sha256(js: Any) -> None:
    data = b"day,visitors\n1,10\n"
    good = hashlib.sha256(data).hexdigest()
    assert js("filesapi.js", DOWNLOAD, [data.hex(), good]) == ["get", "e1", ["ok", data.hex()]]
    bad = js("filesapi.js", DOWNLOAD, [data.hex(), "00" * 32])
    assert bad[2] == [
        "FilesApiError",
        "CorruptArtifact",
        "downloaded bytes do not match the file's sha256",
    ]
