"""Client side of the files API (``/api?token=T``): used by ``simulacra files`` and ``--open``.

::

    FilesClient ──ws──► /api   request(op, ...) ─► {"id":n,...} ─► future n ─► reply | error
                               put: sha256 ─► put_begin ─► chunks, <= 8 in flight
                                    (each chunk_ack frees a slot) ─► put_commit ─► entry
                               get: {"id":n,"op":"get"} ─► ok(size) ─► binary [n, offset] pieces
                                    ─► sha256 checked against the entry when whole
                  reader task ◄── pushed {"op":"inbox"} ─► on_inbox / inbox_items queue

A server error arrives as ``{"type": "CodeExpired", "message": ...}`` and is
raised as that ``simulacra.errors`` class, so callers see one clear line.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from simulacra import errors
from simulacra.errors import (
    ConfigError,
    CorruptArtifact,
    PayloadTooBig,
    ProtocolError,
    SimulacraError,
    TransportError,
    Unauthorized,
)
from simulacra.protocol.jsontext import parse_json_object

__all__ = [
    "FilesClient",
    "api_url",
    "redeem",
    "error_from",
    "CHUNK_BYTES",
    "WINDOW",
    "DOWNLOAD_QUEUE_PIECES",
    "MAX_INBOX_ITEMS",
]

CHUNK_BYTES = 256 * 1024
WINDOW = 8
_HEADER_BYTES = 12  # upload or request id: u32, offset: u64 (big-endian)
MAX_FRAME_BYTES = 2 * 1024 * 1024
# Pieces of one download waiting for their sink (at most 8 MiB): the reader waits past it.
DOWNLOAD_QUEUE_PIECES = 32
# Inbox pushes nobody has taken yet; past it the oldest go (``inbox`` lists them all again).
MAX_INBOX_ITEMS = 1024

Progress = Callable[[int], None]


def api_url(url: str, token: str = "") -> str:
    """``http://host:port[/...][?token=T]`` -> ``ws://host:port/api?token=T``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ConfigError(f"not a server URL: {url!r} (use http://host:port)")
    scheme = "wss" if parts.scheme in ("https", "wss") else "ws"
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    token = token or query.get("token", "")
    if not token:
        raise ConfigError("no token: give --token T (or SIMULACRA_TOKEN, or ?token= in the URL)")
    return urlunsplit((scheme, parts.netloc, "/api", urlencode({"token": token}), ""))


def error_from(obj: Any) -> SimulacraError:
    """The exception an ``error`` object names (unknown names become ``SimulacraError``)."""
    if not isinstance(obj, dict):
        return ProtocolError("server sent a malformed error")
    name = str(obj.get("type", ""))
    message = str(obj.get("message", "error"))
    cls = getattr(errors, name, None) if name in errors.__all__ else None
    if not (isinstance(cls, type) and issubclass(cls, SimulacraError)):
        cls = SimulacraError
    return cls(message)


class _Download:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(DOWNLOAD_QUEUE_PIECES)
        self.error: SimulacraError | None = None
        self.changed = asyncio.Event()

    def fail(self, error: SimulacraError) -> None:
        self.error = self.error or error
        self.changed.set()

    async def next_piece(self, timeout: float) -> tuple[int, bytes]:
        """The next piece in arrival order; the download's error once none are left."""
        async with asyncio.timeout(timeout):
            while self.queue.empty():
                if self.error is not None:
                    raise self.error
                self.changed.clear()
                await self.changed.wait()
        piece = self.queue.get_nowait()
        self.changed.set()  # a slot is free: a reader waiting in put() may go on
        return piece

    async def put(self, piece: tuple[int, bytes]) -> None:
        # Backpressure: the socket is not read until the sink keeps up (or the download ends).
        while self.queue.full() and self.error is None:
            self.changed.clear()
            await self.changed.wait()
        if self.error is None:
            self.queue.put_nowait(piece)
            self.changed.set()


class _UploadState:
    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(WINDOW)
        self.acked = 0
        self.changed = asyncio.Event()
        self.error: SimulacraError | None = None


class FilesClient:
    """``async with FilesClient(url, token) as fc: await fc.put(path)``."""

    def __init__(
        self,
        url: str,
        token: str = "",
        *,
        timeout: float = 30.0,
        on_inbox: Callable[[dict[str, Any]], None] | None = None,
        chunk_bytes: int = CHUNK_BYTES,
        record: BinaryIO | None = None,
    ) -> None:
        self.uri = api_url(url, token)
        self.timeout = timeout
        self.chunk_bytes = max(1, min(chunk_bytes, CHUNK_BYTES))
        self.record = record  # every frame received is written here (``--record``)
        self.on_inbox = on_inbox
        self.inbox_items: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_INBOX_ITEMS)
        self.inbox_dropped = 0  # pushes dropped from a full ``inbox_items`` (oldest first)
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._downloads: dict[int, _Download] = {}
        self._uploads: dict[int, _UploadState] = {}
        self._closed_error: SimulacraError | None = None

    async def __aenter__(self) -> FilesClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        try:
            self._ws = await asyncio.wait_for(
                connect(self.uri, max_size=MAX_FRAME_BYTES, compression=None, open_timeout=None),
                self.timeout,
            )
        except InvalidStatus as exc:
            body = exc.response.body.decode("utf-8", "replace").strip() if exc.response.body else ""
            status = exc.response.status_code
            cls = Unauthorized if status == 401 else TransportError
            raise cls(f"server refused the files API ({status}): {body or 'no reason'}") from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise TransportError(
                f"cannot reach the files API at {self.uri.split('?')[0]}: {exc}"
            ) from None
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="files api reader")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    # -- the reader ----------------------------------------------------------------

    async def _read(self) -> None:
        assert self._ws is not None
        error: SimulacraError = TransportError("the files API connection closed")
        try:
            async for message in self._ws:
                if self.record is not None:
                    self.record.write(message if isinstance(message, bytes) else message.encode())
                if isinstance(message, bytes):
                    await self._binary(message)
                else:
                    self._text(message)
        except ConnectionClosed as exc:
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            error = TransportError(f"the files API connection closed {reason}".strip())
        except SimulacraError as exc:
            error = exc
        finally:
            self._closed_error = error
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(error)
            for dl in self._downloads.values():
                dl.fail(error)
            for up in self._uploads.values():
                up.error = up.error or error
                up.changed.set()
                up.slots.release()

    async def _binary(self, data: bytes) -> None:
        if len(data) < _HEADER_BYTES:
            raise ProtocolError("binary frame shorter than its header")
        rid = int.from_bytes(data[:4], "big")
        offset = int.from_bytes(data[4:12], "big")
        dl = self._downloads.get(rid)
        if dl is not None:
            await dl.put((offset, data[_HEADER_BYTES:]))

    def _text(self, text: str) -> None:
        msg = parse_json_object(text, limit=MAX_FRAME_BYTES, what="a files API frame")
        op = msg.get("op")
        if op == "chunk_ack" or op == "chunk_error":
            up = self._uploads.get(msg.get("upload", -1))
            if up is not None:
                if op == "chunk_ack":
                    up.acked = int(msg.get("offset", 0))
                    up.slots.release()
                else:
                    up.error = error_from(msg.get("error"))
                    up.slots.release()
                up.changed.set()
            return
        if op == "uploads_dropped":
            for uid in msg.get("uploads", ()):
                up = self._uploads.get(uid)
                if up is not None:
                    up.error = TransportError("the server dropped the upload (idle too long)")
                    up.changed.set()
                    up.slots.release()
            return
        if op == "inbox":
            entry = msg.get("entry")
            if isinstance(entry, dict):
                if self.inbox_items.full():
                    self.inbox_items.get_nowait()
                    self.inbox_dropped += 1
                self.inbox_items.put_nowait(entry)
                if self.on_inbox is not None:
                    self.on_inbox(entry)
            return
        rid = msg.get("id")
        fut = self._pending.get(rid) if isinstance(rid, int) else None
        if fut is not None and not fut.done():
            fut.set_result(msg)
            return
        dl = self._downloads.get(rid) if isinstance(rid, int) else None
        if dl is not None and "error" in msg:
            dl.fail(error_from(msg["error"]))

    # -- requests --------------------------------------------------------------------

    def _new_id(self) -> int:
        rid = self._next_id
        self._next_id += 1
        return rid

    async def _send(
        self, rid: int, op: str, fields: dict[str, Any]
    ) -> asyncio.Future[dict[str, Any]]:
        if self._ws is None:
            raise TransportError("not connected")
        if self._closed_error is not None:
            raise self._closed_error
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        body = {k: v for k, v in fields.items() if v is not None}
        try:
            await self._ws.send(json.dumps({"id": rid, "op": op, **body}))
        except ConnectionClosed:
            self._pending.pop(rid, None)
            raise TransportError("the files API connection closed") from None
        return fut

    async def _await(
        self, rid: int, fut: asyncio.Future[dict[str, Any]], timeout: float | None
    ) -> dict[str, Any]:
        try:
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise TransportError("no answer from the files API in time") from None
        finally:
            self._pending.pop(rid, None)
        if "error" in reply:
            raise error_from(reply["error"])
        return reply

    async def request(self, op: str, *, wait: bool = True, **fields: Any) -> dict[str, Any]:
        """Send one request and return its reply (raises the error it carries).

        ``wait=False`` waits without the client's timeout (a commit compresses a
        whole file before it answers).
        """
        rid = self._new_id()
        fut = await self._send(rid, op, fields)
        return await self._await(rid, fut, self.timeout if wait else None)

    async def ls(self) -> list[dict[str, Any]]:
        return list((await self.request("ls"))["entries"])

    async def share(
        self,
        entry: str,
        *,
        to: str | None = None,
        rights: str = "view",
        ttl: str = "7d",
        uses: int = 1,
        anyone: bool = False,
    ) -> dict[str, Any]:
        return await self.request(
            "share", entry=entry, to=to, rights=rights, ttl=ttl, uses=uses, anyone=anyone or None
        )

    async def revoke(self, code: str) -> dict[str, Any]:
        return await self.request("revoke", code=code)

    async def redeem(self, code: str | None = None, *, inbox: int | None = None) -> dict[str, Any]:
        return dict((await self.request("redeem", code=code, inbox=inbox))["entry"])

    async def inbox(self, *, every: bool = False) -> list[dict[str, Any]]:
        return list((await self.request("inbox", all=every or None))["items"])

    # -- upload ------------------------------------------------------------------------

    async def put(
        self,
        source: str | os.PathLike[str] | bytes,
        *,
        name: str | None = None,
        type: str = "",
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Upload a file (path or bytes) in chunks, <= ``WINDOW`` in flight; its entry."""
        if isinstance(source, bytes):
            data: bytes | None = source
            size = len(source)
            sha = hashlib.sha256(source).hexdigest()
            name = name or "upload.bin"
            fh: BinaryIO | None = None
        else:
            path = Path(source)
            try:
                size = path.stat().st_size
                sha = await asyncio.to_thread(_file_sha256, path)
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
            name = name or path.name
            data = None
            fh = open(path, "rb")  # noqa: SIM115 (closed below)
        try:
            begin = await self.request("put_begin", name=name, size=size, type=type, sha256=sha)
            uid = int(begin["upload"])
            chunk = min(int(begin.get("chunk_bytes", CHUNK_BYTES)), self.chunk_bytes)
            state = _UploadState()
            self._uploads[uid] = state
            try:
                await self._send_chunks(uid, state, size, chunk, data, fh, progress)
                reply = await self.request("put_commit", upload=uid, wait=False)
            except BaseException:
                if self._closed_error is None and state.error is None:
                    await self.request("put_abort", upload=uid)
                raise
            finally:
                self._uploads.pop(uid, None)
        finally:
            if fh is not None:
                fh.close()
        return dict(reply["entry"])

    async def _send_chunks(
        self,
        uid: int,
        state: _UploadState,
        size: int,
        chunk: int,
        data: bytes | None,
        fh: BinaryIO | None,
        progress: Progress | None,
    ) -> None:
        assert self._ws is not None
        offset = 0
        while offset < size:
            await state.slots.acquire()  # flow control: a slot frees on each chunk_ack
            if state.error is not None:
                raise state.error
            if data is not None:
                piece = data[offset : offset + chunk]
            else:
                assert fh is not None
                piece = await asyncio.to_thread(fh.read, min(chunk, size - offset))
                if not piece:
                    raise ConfigError("the file shrank while it was uploaded")
            header = uid.to_bytes(4, "big") + offset.to_bytes(8, "big")
            try:
                await self._ws.send(header + piece)
            except ConnectionClosed:
                raise TransportError("the files API connection closed") from None
            offset += len(piece)
        while state.acked < size and state.error is None:
            state.changed.clear()
            if progress is not None:
                progress(state.acked)
            try:
                await asyncio.wait_for(state.changed.wait(), self.timeout)
            except TimeoutError:
                raise TransportError("the server stopped acknowledging chunks") from None
        if state.error is not None:
            raise state.error
        if progress is not None:
            progress(state.acked)

    # -- download ----------------------------------------------------------------------

    async def get(
        self,
        *,
        entry: str | None = None,
        code: str | None = None,
        start: int = 0,
        end: int | None = None,
        sink: BinaryIO | None = None,
        max_bytes: int = 1 << 40,
        progress: Progress | None = None,
    ) -> tuple[dict[str, Any], bytes | None]:
        """Download an entry (or a code, redeemed on the way): its entry and the bytes.

        With a ``sink`` the bytes are written there and ``None`` returned. A whole
        download is checked against the entry's sha256 (``CorruptArtifact``).
        """
        rid = self._new_id()
        dl = _Download()
        self._downloads[rid] = dl
        try:
            fut = await self._send(
                rid, "get", {"entry": entry, "code": code, "start": start, "end": end}
            )
            head = await self._await(rid, fut, self.timeout)
            info = dict(head["entry"])
            total = int(head["size"])
            if total > max_bytes:
                raise PayloadTooBig(f"download of {total} bytes is over the {max_bytes} limit")
            hasher = hashlib.sha256()
            out = bytearray() if sink is None else None
            got = 0
            expected_offset = int(head["start"])
            while got < total:
                try:
                    offset, piece = await dl.next_piece(self.timeout)
                except TimeoutError:
                    raise TransportError("the download stalled") from None
                if offset != expected_offset or got + len(piece) > total:
                    raise ProtocolError("download pieces arrived out of order")
                hasher.update(piece)
                if out is not None:
                    out.extend(piece)
                else:
                    assert sink is not None
                    await asyncio.to_thread(sink.write, piece)
                got += len(piece)
                expected_offset += len(piece)
                if progress is not None:
                    progress(got)
            whole = int(head["start"]) == 0 and total == int(info["size"])
            if whole and "sha256" in info and hasher.hexdigest() != info["sha256"]:
                raise CorruptArtifact("downloaded bytes do not match the file's sha256")
            return info, (bytes(out) if out is not None else None)
        finally:
            self._downloads.pop(rid, None)
            # Unblock a reader waiting to queue a piece nobody will take now.
            dl.fail(TransportError("the download was given up"))
            while not dl.queue.empty():
                dl.queue.get_nowait()


def _file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while piece := fh.read(1 << 20):
            hasher.update(piece)
    return hasher.hexdigest()


async def redeem(
    url: str, token: str, code: str, *, timeout: float = 15.0, record: BinaryIO | None = None
) -> dict[str, Any]:
    """Redeem ``code`` for the token's user; the new (or existing) viewer-dictionary entry.

    For ``simulacra client --open CODE``: then stream ``app="viewer"``,
    ``session=entry["id"]``. ``record`` receives every byte the files API sent.
    """
    async with FilesClient(url, token, timeout=timeout, record=record) as client:
        return await client.redeem(code)
