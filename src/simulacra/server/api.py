"""The files API: a WebSocket at ``/api?token=T`` on the server's one port.

::

    client                                          server (FilesApi, one task per socket)
    text {"id":1,"op":"put_begin",name,size,sha256} ─► Upload (temp file)  ─► {"id":1,"ok":true,"upload":7}
    bin  [upload:u32 offset:u64] bytes (<=256 KiB)  ─► Upload.write        ─► {"op":"chunk_ack","upload":7,"offset":o}
         (at most 8 chunks in flight)
    text {"id":2,"op":"put_commit","upload":7}     ─► blocks, entry        ─► {"id":2,"ok":true,"entry":{...}}
    text {"id":3,"op":"get","entry":E}             ─► rights download?     ─► {"id":3,"ok":true,"size":n,...}
                                                     ◄── bin [3:u32 offset:u64] bytes ... (n bytes in all)
    ◄── text {"op":"inbox","entry":{...}}   pushed when a code is shared to this user (live),
                                            or right after connect for items shared meanwhile

Errors answer the request: ``{"id":n,"error":{"type":"CodeExpired","message":"..."}}``.
A socket that closes drops its unfinished uploads, and an upload without a
chunk for ``idle_timeout`` is dropped even while other requests flow: their
temporary files are deleted, no row is written.
Store calls (SQLite, compression, block decoding) run in threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection as WsConnection
from websockets.exceptions import ConnectionClosed

from simulacra.apps.base import SegmentRunner
from simulacra.apps.viewer import viewer_for_entry
from simulacra.errors import (
    InvalidState,
    NotFound,
    PayloadTooBig,
    ProtocolError,
    SimulacraError,
)
from simulacra.protocol.jsontext import parse_json_object
from simulacra.protocol.messages import ErrorCode
from simulacra.server.files import FilesStore, InboxItem, Upload
from simulacra.server.sessions import AppSession, SessionKey, SessionManager

__all__ = [
    "FilesApi",
    "FILES_API_PATH",
    "CHUNK_HEADER",
    "MAX_CHUNK_BYTES",
    "MAX_REQUEST_BYTES",
    "UPLOAD_WINDOW",
    "MAX_REQUEST_ID",
    "MAX_UPLOADS_PER_USER",
    "error_object",
]

log = logging.getLogger("simulacra.server.api")

FILES_API_PATH = "/api"
CHUNK_HEADER = struct.Struct(">IQ")  # upload id (or request id for downloads), byte offset
MAX_CHUNK_BYTES = 256 * 1024
MAX_REQUEST_BYTES = 64 * 1024
UPLOAD_WINDOW = 8  # chunks a client keeps in flight
MAX_UPLOADS_PER_SOCKET = 4
MAX_UPLOADS_PER_USER = 8
MAX_REQUEST_ID = 0xFFFFFFFF


def viewer_session_key(user: str, entry_id: str) -> SessionKey:
    """The session that shows ``user`` the picture of their entry ``entry_id``."""
    return ("private", user, f"viewer:{entry_id}")


def error_object(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, SimulacraError):
        return {"type": type(exc).__name__, "message": str(exc)[:1024]}
    return {"type": "SimulacraError", "message": "server error"}


@dataclass(eq=False)
class _Socket:
    ws: WsConnection
    user: str
    uploads: dict[int, Upload] = field(default_factory=dict)
    touched: dict[int, float] = field(default_factory=dict)  # upload -> loop time of last chunk
    next_upload: int = 1
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send_json(self, obj: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send(json.dumps(obj, separators=(",", ":")))


def _field(
    req: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...
) -> Any:
    value = req.get(name, default)
    if value is ...:
        raise ProtocolError(f"{req.get('op')}: missing field {name!r}")
    if value is not default and (
        not isinstance(value, kind) or isinstance(value, bool) and kind is int
    ):
        raise ProtocolError(f"{req.get('op')}: field {name!r} has the wrong type")
    return value


class FilesApi:
    """Serves ``/api`` sockets for one ``FilesStore``; knows which users are online."""

    def __init__(self, files: FilesStore, *, idle_timeout: float = 60.0) -> None:
        self.files = files
        self.idle_timeout = idle_timeout
        self._sockets: dict[str, set[_Socket]] = {}
        # Set by the server when an MQTT bus runs: announces an inbox row to other nodes.
        self.notify: Callable[[str, int], Awaitable[object]] | None = None
        # Set by the server: ends the open viewer sessions of (user, entry id) pairs.
        self.on_revoked: Callable[[list[tuple[str, str]]], Awaitable[object]] | None = None

    @classmethod
    def open(cls, data_dir: Path, **kwargs: Any) -> FilesApi:
        """Open the store of ``data_dir`` (blocking) and serve it."""
        return cls(FilesStore(data_dir), **kwargs)

    def close(self) -> None:
        self.files.close()

    def open_viewer(
        self,
        sessions: SessionManager,
        user: str,
        entry_id: str,
        runner: SegmentRunner | None = None,
    ) -> AppSession:
        """The viewer session of ``user``'s entry ``entry_id`` (``NotFound`` if not theirs).

        Hook for ``Hello(app="viewer", session=entry_id)``; one short SQLite
        lookup, the file itself is read later on the session's worker.
        """
        self.files.entry(user, entry_id)  # still theirs, code not revoked, on every open
        return sessions.get_or_create(
            viewer_session_key(user, entry_id),
            f"{user}/viewer/{entry_id}",
            lambda: viewer_for_entry(self.files, user, entry_id, runner),
        )

    async def end_viewers(
        self, sessions: SessionManager, opened: list[tuple[str, str]], reason: str
    ) -> None:
        """End the viewer sessions of ``opened`` (user, entry id): their access is gone."""
        for user, entry_id in opened:
            await sessions.end(viewer_session_key(user, entry_id), ErrorCode.NOT_FOUND, reason)

    def online(self, user: str) -> int:
        return len(self._sockets.get(user, ()))

    @property
    def upload_count(self) -> int:
        return sum(len(s.uploads) for group in self._sockets.values() for s in group)

    # -- one socket ------------------------------------------------------------

    async def serve(self, ws: WsConnection, user: str) -> None:
        """Run one authenticated ``/api`` socket until it closes."""
        sock = _Socket(ws, user)
        self._sockets.setdefault(user, set()).add(sock)
        try:
            await self._deliver_pending(sock)
            while True:
                # Checked on every turn: requests on the socket do not keep an idle upload alive.
                wait = await self._drop_idle_uploads(sock)
                try:
                    message = await asyncio.wait_for(ws.recv(), wait)
                except TimeoutError:
                    continue
                if isinstance(message, str):
                    await self._request(sock, message)
                else:
                    await self._chunk(sock, message)
        except ConnectionClosed:
            pass
        finally:
            group = self._sockets.get(user)
            if group is not None:
                group.discard(sock)
                if not group:
                    del self._sockets[user]
            await self._drop_uploads(sock)

    async def _drop_idle_uploads(self, sock: _Socket) -> float | None:
        """Drop uploads without a chunk for ``idle_timeout``; seconds until the next may be."""
        now = asyncio.get_running_loop().time()
        idle = sorted(u for u in sock.uploads if now - sock.touched[u] >= self.idle_timeout)
        for uid in idle:
            upload = sock.uploads.pop(uid)
            sock.touched.pop(uid, None)
            await asyncio.to_thread(upload.abort)
        if idle:
            await sock.send_json(
                {"op": "uploads_dropped", "uploads": idle, "reason": "idle timeout"}
            )
        if not sock.uploads:
            return None
        return max(0.0, min(sock.touched.values()) + self.idle_timeout - now)

    async def _drop_uploads(self, sock: _Socket) -> None:
        uploads = list(sock.uploads.values())
        sock.uploads.clear()
        sock.touched.clear()
        for upload in uploads:
            await asyncio.to_thread(upload.abort)

    async def _deliver_pending(self, sock: _Socket) -> None:
        items = await asyncio.to_thread(self.files.inbox, sock.user)
        for item in items:
            await sock.send_json({"op": "inbox", "entry": item.as_dict()})
        if items:
            await asyncio.to_thread(self.files.mark_delivered, sock.user, [i.id for i in items])

    async def push_inbox(self, item: InboxItem) -> bool:
        """Send ``item`` to every open socket of its user; True if one took it."""
        sent = False
        for sock in list(self._sockets.get(item.user, ())):
            try:
                await sock.send_json({"op": "inbox", "entry": item.as_dict()})
                sent = True
            except ConnectionClosed:
                continue
        if sent:
            await asyncio.to_thread(self.files.mark_delivered, item.user, [item.id])
        return sent

    # -- binary frames: upload chunks --------------------------------------------

    async def _chunk(self, sock: _Socket, data: bytes) -> None:
        if len(data) < CHUNK_HEADER.size:
            await sock.send_json(
                {
                    "op": "chunk_error",
                    "error": error_object(
                        ProtocolError("binary frame shorter than its chunk header")
                    ),
                }
            )
            return
        upload_id, offset = CHUNK_HEADER.unpack_from(data)
        payload = data[CHUNK_HEADER.size :]
        upload = sock.uploads.get(upload_id)
        try:
            if upload is None:
                raise InvalidState(f"no open upload {upload_id}")
            if len(payload) > MAX_CHUNK_BYTES:
                raise PayloadTooBig(
                    f"chunk of {len(payload)} bytes; the limit is {MAX_CHUNK_BYTES}"
                )
            received = await asyncio.to_thread(upload.write, offset, payload)
            sock.touched[upload_id] = asyncio.get_running_loop().time()
        except Exception as exc:  # SimulacraError, or the disk failing: drop that upload only
            if not isinstance(exc, SimulacraError):
                log.warning("upload %d of %s failed: %s", upload_id, sock.user, exc)
            if upload is not None:
                sock.uploads.pop(upload_id, None)
                sock.touched.pop(upload_id, None)
                await asyncio.to_thread(upload.abort)
            await sock.send_json(
                {"op": "chunk_error", "upload": upload_id, "error": error_object(exc)}
            )
            return
        await sock.send_json({"op": "chunk_ack", "upload": upload_id, "offset": received})

    # -- text frames: requests ---------------------------------------------------

    async def _request(self, sock: _Socket, text: str) -> None:
        rid: Any = None
        try:
            req = parse_json_object(text, limit=MAX_REQUEST_BYTES, what="request")
            rid = req.get("id")
            # The id also heads download chunks (u32), so it must fit in one.
            if not isinstance(rid, int) or isinstance(rid, bool) or not 0 <= rid <= MAX_REQUEST_ID:
                rid = None
                raise ProtocolError(f"request needs an integer id 0..{MAX_REQUEST_ID}")
            op = req.get("op")
            handler: (
                Callable[[_Socket, int, dict[str, Any]], Awaitable[dict[str, Any] | None]] | None
            )
            handler = (
                getattr(self, f"_op_{op}", None)
                if isinstance(op, str) and op.isidentifier()
                else None
            )
            if handler is None:
                raise ProtocolError(f"unknown op {str(op)[:40]!r}")
            reply = await handler(sock, rid, req)
            if reply is not None:
                await sock.send_json({"id": rid, "ok": True, **reply})
        except ConnectionClosed:
            raise
        except SimulacraError as exc:
            await sock.send_json({"id": rid, "error": error_object(exc)})
        except Exception as exc:  # a bug here must not kill the socket silently
            log.exception("files api request of %s failed", sock.user)
            await sock.send_json({"id": rid, "error": error_object(exc)})

    async def _op_put_begin(self, sock: _Socket, rid: int, req: dict[str, Any]) -> dict[str, Any]:
        if len(sock.uploads) >= MAX_UPLOADS_PER_SOCKET:
            raise InvalidState(f"at most {MAX_UPLOADS_PER_SOCKET} uploads at once per socket")
        # Each open upload may reserve up to the size limit on disk: bound them per user too.
        if sum(len(s.uploads) for s in self._sockets.get(sock.user, ())) >= MAX_UPLOADS_PER_USER:
            raise InvalidState(f"at most {MAX_UPLOADS_PER_USER} uploads at once per user")
        upload = await asyncio.to_thread(
            self.files.begin_upload,
            sock.user,
            _field(req, "name", str),
            _field(req, "size", int),
            _field(req, "type", str, ""),
            _field(req, "sha256", str),
        )
        uid = sock.next_upload
        sock.next_upload += 1
        sock.uploads[uid] = upload
        sock.touched[uid] = asyncio.get_running_loop().time()
        return {"upload": uid, "chunk_bytes": MAX_CHUNK_BYTES, "window": UPLOAD_WINDOW}

    async def _op_put_commit(self, sock: _Socket, rid: int, req: dict[str, Any]) -> dict[str, Any]:
        uid = _field(req, "upload", int)
        upload = sock.uploads.pop(uid, None)
        sock.touched.pop(uid, None)
        if upload is None:
            raise InvalidState(f"no open upload {uid}")
        entry = await asyncio.to_thread(upload.commit)
        return {"entry": entry.as_dict()}

    async def _op_put_abort(self, sock: _Socket, rid: int, req: dict[str, Any]) -> dict[str, Any]:
        uid = _field(req, "upload", int)
        upload = sock.uploads.pop(uid, None)
        sock.touched.pop(uid, None)
        if upload is not None:
            await asyncio.to_thread(upload.abort)
        return {}

    async def _op_ls(self, sock: _Socket, rid: int, req: dict[str, Any]) -> dict[str, Any]:
        entries = await asyncio.to_thread(self.files.entries, sock.user)
        return {"entries": [e.as_dict() for e in entries]}

    async def _op_codes(self, sock: _Socket, rid: int, req: dict[str, Any]) -> dict[str, Any]:
        return {"codes": await asyncio.to_thread(self.files.codes, sock.user)}

    async def _op_share(self, sock: _Socket, rid: int, req: dict[str, Any]) -> dict[str, Any]:
        share = await asyncio.to_thread(
            lambda: self.files.share(
                sock.user,
                _field(req, "entry", str),
                to=_field(req, "to", str, None),
                rights=_field(req, "rights", str, "view"),
                ttl=_field(req, "ttl", (str, int, float), "7d"),
                uses=_field(req, "uses", int, 1),
                anyone=_field(req, "anyone", bool, False),
            )
        )
        reply = share.as_dict()
        if share.inbox is not None:
            reply["delivered"] = await self.push_inbox(share.inbox)
            if self.notify is not None:  # the recipient may be connected to another node
                await self.notify(share.inbox.user, share.inbox.id)
        return reply

    async def _op_revoke(self, sock: _Socket, rid: int, req: dict[str, Any]) -> dict[str, Any]:
        code_id = await asyncio.to_thread(self.files.revoke, sock.user, _field(req, "code", str))
        if self.on_revoked is not None:
            # Viewers already looking at the file lose the picture now, not at their next open.
            opened = await asyncio.to_thread(self.files.entries_of_code, code_id)
            await self.on_revoked(opened)
        return {"code_id": code_id}

    async def _op_redeem(self, sock: _Socket, rid: int, req: dict[str, Any]) -> dict[str, Any]:
        inbox = _field(req, "inbox", int, None)
        code = None if inbox is not None else _field(req, "code", str)
        entry = await asyncio.to_thread(self.files.redeem, sock.user, code, inbox=inbox)
        return {"entry": entry.as_dict()}

    async def _op_inbox(self, sock: _Socket, rid: int, req: dict[str, Any]) -> dict[str, Any]:
        every = _field(req, "all", bool, False)
        items = await asyncio.to_thread(self.files.inbox, sock.user, undelivered=not every)
        if items:
            await asyncio.to_thread(self.files.mark_delivered, sock.user, [i.id for i in items])
        return {"items": [i.as_dict() for i in items]}

    async def _op_get(self, sock: _Socket, rid: int, req: dict[str, Any]) -> None:
        if "code" in req:
            entry_id = (
                await asyncio.to_thread(self.files.redeem, sock.user, _field(req, "code", str))
            ).id
        else:
            entry_id = _field(req, "entry", str)
        entry = await asyncio.to_thread(self.files.entry, sock.user, entry_id)
        start = _field(req, "start", int, 0)
        end = _field(req, "end", int, None)
        stop = entry.size if end is None else end
        if not 0 <= start <= stop <= entry.size:
            raise NotFound(f"range {start}-{stop} is outside 0-{entry.size}")
        pieces = await asyncio.to_thread(self.files.read, sock.user, entry_id, start, end)
        await sock.send_json(
            {
                "id": rid,
                "ok": True,
                "entry": entry.as_dict(),
                "start": start,
                "end": stop,
                "size": stop - start,
            }
        )
        offset = start
        while True:
            # Each step decodes one block (and checks it) off the event loop.
            piece = await asyncio.to_thread(next, pieces, None)
            if piece is None:
                break
            for at in range(0, len(piece), MAX_CHUNK_BYTES):
                part = piece[at : at + MAX_CHUNK_BYTES]
                async with sock.send_lock:
                    await sock.ws.send(CHUNK_HEADER.pack(rid, offset) + part)
                offset += len(part)
        return None
