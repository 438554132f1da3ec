"""The server: one port for static files, health, status and signaling.

::

    Server(cfg) ─► Store (users, tokens) ─► admin token
               ─► websockets.serve(host, port)
                    process_request: /healthz  /api/status  /  /<file>  (plain HTTP replies)
                                     /signal?token=T&transport=…  (401 before any upgrade)
                    handler:         ws ─► serve_ws_link           (protocol on binary frames)
                                     webrtc ─► serve_webrtc_signaling ─► PeerSession
               ─► AppRunners: the default app's emulators (compiled on first start, then
                  loaded from data_dir/emulators); other apps' on their first Hello;
                  a background task reloads patched segments every refresh_interval
               ─► SessionManager ─► AppSession per (user, app) or shared name
               ─► worker pool (app steps, renders, tile encoding: never on the event loop)

``GET /api/status`` (``Authorization: Bearer T``) answers JSON::

    {"version", "default_app", "connections", "peers",
     "apps": {APP: {"state": "ready"|"compiling"|"failed"|"not loaded",
                    "mode": "emulated"|"reference", "error"?,
                    "segments"?: {SEGMENT: {"in_bits", "out_bits", "bytes", "packed_bytes",
                                            "verified", "queries", "fallbacks", "version",
                                            "patches": [{"version", "count", "pairs"}]}}}},
     "sessions": [{"name", "app", "shared", "frame_version", "viewer_bytes_bound",
                   "viewers" (a count), "viewer_memory": [{"user", "role", "mode", "bytes",
                                                           "in_flight"}]}]}

``bytes`` of a viewer is what the server holds for it (encoder and transport
buffers); it never exceeds ``viewer_bytes_bound``, however stalled the viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import weakref
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection as WsConnection
from websockets.asyncio.server import serve
from websockets.http11 import Request, Response

from simulacra import __version__
from simulacra.apps import APP_NAMES, VIEWER_APP
from simulacra.codecs.display import TileEncodeCache
from simulacra.errors import ConfigError, NotFound
from simulacra.protocol.messages import Bye
from simulacra.protocol.wire import MAX_MESSAGE_BYTES
from simulacra.server.api import FILES_API_PATH, FilesApi
from simulacra.server.auth import bearer_token, query_params
from simulacra.server.bus import MQTT_OFF, BusConfig, MqttBus, Notification, default_node_name
from simulacra.server.config import ServerConfig
from simulacra.server.connection import Link, LinkContext
from simulacra.server.http import (
    default_web_root,
    json_reply,
    static_reply,
    text_reply,
    to_response,
)
from simulacra.server.ice import PROBE_INTERVAL_S, IceSettings
from simulacra.server.peers import PeerSession
from simulacra.server.sessions import (
    AppRunners,
    AppSession,
    RunnerLoader,
    SessionManager,
    viewer_memory_bound,
)
from simulacra.server.signaling import serve_webrtc_signaling, serve_ws_link
from simulacra.server.store import ADMIN_NAME, Store, User

__all__ = ["Server"]

_CLOSE_STAGE_S = 10.0  # a shutdown stage that takes longer is abandoned, with a warning

log = logging.getLogger("simulacra.server")

_TRANSPORTS = ("webrtc", "ws")


class Server:
    """HTTP + signaling + app sessions; ``async with Server(cfg) as srv`` runs it."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        web_root: Path | None = None,
        load_runner: RunnerLoader | None = None,
    ) -> None:
        self.config = config
        # load_runner replaces load_or_compile_segments (tests use it to hold a build back).
        self.runners = AppRunners(
            config.data_dir,
            reference=config.reference,
            progress=config.progress,
            load=load_runner,
        )
        self._refresher: asyncio.Task[None] | None = None
        self._ice_prober: asyncio.Task[None] | None = None
        self.web_root = web_root if web_root is not None else default_web_root()
        self.admin_token = ""
        self.store: Store | None = None
        self.sessions: SessionManager | None = None
        self.ready = False
        self._ws: WsServer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._links: set[Link] = set()
        self._peers: set[PeerSession] = set()
        # Filled by process_request, read by the handler; weak, as a refused upgrade never gets one.
        self._auth: weakref.WeakKeyDictionary[WsConnection, tuple[User, str]] = (
            weakref.WeakKeyDictionary()
        )
        self._ctx: LinkContext | None = None
        self.files_api: FilesApi | None = None
        self.bus: MqttBus | None = None
        self._port = 0

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        cfg = self.config
        if cfg.app not in APP_NAMES:
            raise ConfigError(f"unknown app {cfg.app!r}; known apps: {', '.join(APP_NAMES)}")
        self.store = await asyncio.to_thread(Store, cfg.data_dir)
        self.admin_token = await asyncio.to_thread(self.store.ensure_admin)
        try:
            # The default app is ready before the port opens; others build on first use.
            # The viewer's segments are small (seconds at most) and shared files open
            # through them, so they are ready too.
            await self.runners.wait(cfg.app)
            await self.runners.wait(VIEWER_APP)
        except BaseException:
            await self._release()
            raise
        self.files_api = await asyncio.to_thread(FilesApi.open, cfg.data_dir)
        self.files_api.on_revoked = self._end_revoked_viewers
        # Sessions take turns on a few threads; each session runs one job at a time, in order.
        self._executor = ThreadPoolExecutor(
            max_workers=max(2, min(8, os.cpu_count() or 2)), thread_name_prefix="simulacra-session"
        )
        self.sessions = SessionManager(
            make_app=self.runners.make_app,
            executor=self._executor,
            frame_window=cfg.frame_window,
            regroup_interval=cfg.regroup_interval,
            regroup_budget=cfg.regroup_budget,
            max_pending=cfg.max_pending_messages,
            max_sessions=cfg.max_sessions,
            dictionary_slots=cfg.dictionary_slots,
            cache=TileEncodeCache(cfg.tile_cache_entries),
        )
        self._ctx = LinkContext(
            sessions=self.sessions,
            runners=self.runners,
            compile_wait=cfg.compile_wait,
            default_app=cfg.app,
            apps=APP_NAMES,
            hello_timeout=cfg.hello_timeout,
            max_send_buffer=cfg.max_send_buffer,
            dictionary_slots=cfg.dictionary_slots,
            on_closed=self._links.discard,
            open_viewer=self._open_viewer,
            ice=IceSettings.from_config(cfg),
        )
        try:
            self._ws = await serve(
                self._handler,
                cfg.host,
                cfg.port,
                process_request=self._process_request,
                # Tiles are compressed already; deflate would only burn CPU.
                compression=None,
                max_size=2 * MAX_MESSAGE_BYTES,  # past 1 MiB the protocol answers 413 itself
                close_timeout=5,
            )
        except OSError as exc:
            await self._release()
            raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port}: {exc}") from exc
        self._port = next(iter(self._ws.sockets)).getsockname()[1]
        if cfg.mqtt != MQTT_OFF:
            try:
                # Never waits on an external broker: it connects (and reconnects) in the background.
                bus = MqttBus(
                    BusConfig(cfg.mqtt, cfg.node or default_node_name(), cfg.data_dir, self.url),
                    on_notification=self._on_notification,
                )
                await bus.start()
            except BaseException:
                await self.close()
                raise
            self.bus = bus
            if self.files_api is not None:
                self.files_api.notify = bus.notify
        self._refresher = asyncio.get_running_loop().create_task(
            self._refresh_forever(), name="emulator refresh"
        )
        if cfg.ice_servers:
            # Probed before the first client: an unreachable one is skipped by our peer
            # and named in the log at once (PROBE_TIMEOUT_S at most, all in parallel).
            await self._ctx.ice_health.refresh(cfg.ice_servers)
            self._ice_prober = asyncio.get_running_loop().create_task(
                self._probe_ice_forever(), name="ice probes"
            )
        self.ready = True

    async def _probe_ice_forever(self) -> None:
        assert self._ctx is not None
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            await self._ctx.ice_health.refresh(self.config.ice_servers)

    async def _refresh_forever(self) -> None:
        """Pick up ``simulacra apps patch`` from other processes while running."""
        while True:
            await asyncio.sleep(self.config.refresh_interval)
            for app in await self.runners.refresh():
                if self.sessions is not None:
                    self.sessions.redraw(app)

    async def close(self) -> None:
        self.ready = False
        for link in list(self._links):
            link.send_message(Bye(reason="server shutting down"))
            link.close(1001, "server shutting down")
        peers = list(self._peers)
        await _bounded(
            asyncio.gather(*(p.close(1001, "server shutting down") for p in peers)), "peers"
        )
        if self._ws is not None:
            self._ws.close()
            await _bounded(self._ws.wait_closed(), "websocket server")
            self._ws = None
        await self._release()

    async def _release(self) -> None:
        for task in (self._refresher, self._ice_prober):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._refresher = self._ice_prober = None
        if self.sessions is not None:
            await _bounded(self.sessions.close(), "app sessions")
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self.bus is not None:
            await _bounded(self.bus.close(), "mqtt bus")
            self.bus = None
        if self.files_api is not None:
            self.files_api.close()
            self.files_api = None
        if self.store is not None:
            self.store.close()
            self.store = None

    async def serve_forever(self) -> None:
        assert self._ws is not None, "start() first"
        await self._ws.serve_forever()

    # -- contract --------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._port}"

    def _open_viewer(self, user: str, entry_id: str) -> AppSession:
        """The viewer session of ``user``'s entry: the picture of a shared file."""
        if self.files_api is None or self.sessions is None:
            raise NotFound("this server does not serve files")
        runner = self.runners.runner(VIEWER_APP)
        return self.files_api.open_viewer(self.sessions, user, entry_id, runner)

    async def _end_revoked_viewers(self, opened: list[tuple[str, str]]) -> None:
        if self.files_api is not None and self.sessions is not None:
            reason = "access to this file was revoked by its owner"
            await self.files_api.end_viewers(self.sessions, opened, reason)

    def add_user(self, name: str, role: str = "control") -> str:
        assert self.store is not None, "start() first"
        return self.store.add_user(name, role)

    @property
    def peer_count(self) -> int:
        return len(self._peers)

    @property
    def connection_count(self) -> int:
        return len(self._links)

    def viewer_memory_bound(self, app: str) -> int:
        """Bytes one viewer of ``app`` may make the server hold, however stalled it is."""
        app_cls = self.runners.app_class(app)
        cfg = self.config
        return viewer_memory_bound(
            app_cls.width,
            app_cls.height,
            dictionary_slots=cfg.dictionary_slots,
            max_send_buffer=cfg.max_send_buffer,
        )

    def status(
        self, apps: dict[str, Any] | None = None, viewer: User | None = None
    ) -> dict[str, Any]:
        """What ``GET /api/status`` answers; ``apps`` (patch manifests: blocking) read apart.

        ``viewer`` is who asks: the admin sees every session, anyone else only the
        sessions that are theirs or that they are watching (names of other users'
        sessions and of their files' viewer sessions stay private).
        """
        sessions = list(self.sessions.sessions.values()) if self.sessions is not None else []
        admin = viewer is None or viewer.name == ADMIN_NAME
        if viewer is not None and not admin:
            sessions = [
                s
                for s in sessions
                if (s.key[0] == "private" and s.key[1] == viewer.name)
                or any(v.user == viewer.name for v in list(s.viewers))
            ]
        return {
            "version": __version__,
            "apps": apps if apps is not None else self.runners.status((*APP_NAMES, VIEWER_APP)),
            "default_app": self.config.app,
            "sessions": [
                {
                    "name": s.name,
                    "app": s.app_name,
                    "shared": s.key[0] == "shared",
                    "viewers": len(s.viewers),
                    "viewer_memory": [
                        {
                            "user": v.user,
                            "role": v.role,
                            "mode": v.mode,
                            "bytes": v.nbytes,
                            "in_flight": v.in_flight,
                        }
                        for v in list(s.viewers)
                    ],
                    "viewer_bytes_bound": self.viewer_memory_bound(s.app_name),
                    "frame_version": s.version,
                    "encoder_groups": len(s.groups),
                    "fan_out": dataclasses.asdict(s.stats),
                }
                for s in sessions
            ],
            "connections": self.connection_count,
            "peers": self.peer_count,
            # Which STUN/TURN servers answer from here: the admin's view only.
            "ice": (
                self._ctx.ice_health.to_json()
                if self._ctx is not None and self.config.ice_servers and admin
                else None
            ),
            "mqtt": self.bus.status() if self.bus is not None else None,
        }

    async def _on_notification(self, note: Notification) -> None:
        """Another node announced an inbox row: push it to the user's sockets here, if any."""
        api = self.files_api
        if api is None or not api.online(note.user):
            return  # not connected here; its next connect delivers it
        items = await asyncio.to_thread(
            api.files.inbox, note.user, undelivered=False, item_id=note.inbox_id
        )
        for item in items:
            await api.push_inbox(item)

    # -- HTTP ------------------------------------------------------------------

    async def _authenticate(self, token: str | None) -> User | None:
        if self.store is None or not token:
            return None
        return await asyncio.to_thread(self.store.authenticate, token)

    async def _process_request(self, ws: WsConnection, request: Request) -> Response | None:
        path, params = query_params(request.path)
        if path in ("/signal", FILES_API_PATH):  # FILES_API_PATH: the files API (server/api.py)
            carrier = params.get("transport", "webrtc") if path == "/signal" else "api"
            if path == "/signal" and carrier not in _TRANSPORTS:
                return to_response(text_reply(400, "transport must be webrtc or ws"))
            token = params.get("token")
            if not token:
                return to_response(text_reply(401, "missing token"))
            user = await self._authenticate(token)
            if user is None:
                return to_response(text_reply(401, "invalid token"))
            if not self.ready:
                return to_response(text_reply(503, "server is not ready"))
            self._auth[ws] = (user, carrier)
            return None  # websockets performs the upgrade (or answers 426 to plain GETs)
        if request.headers.get("Upgrade"):
            return to_response(text_reply(404, f"no WebSocket at {path[:200]}"))
        if path == "/healthz":
            ok = self.ready
            return to_response(text_reply(200, "ok") if ok else text_reply(503, "starting"))
        if path == "/api/status":
            user = await self._authenticate(bearer_token(request.headers))
            if user is None:
                return to_response(text_reply(401, "invalid or missing bearer token"))
            apps = await asyncio.to_thread(self.runners.status, (*APP_NAMES, VIEWER_APP))
            return to_response(json_reply(self.status(apps, viewer=user)))
        if path.startswith("/api/"):
            return to_response(text_reply(404, f"not found: {path[:200]}"))
        return to_response(await asyncio.to_thread(static_reply, self.web_root, path))

    # -- WebSocket ---------------------------------------------------------------

    async def _handler(self, ws: WsConnection) -> None:
        found = self._auth.pop(ws, None)
        if found is None or self._ctx is None:
            await ws.close(4401, "4401 invalid token")
            return
        user, carrier = found
        if carrier == "api" and self.files_api is not None:
            await self.files_api.serve(ws, user.name)
        elif carrier == "ws":
            await serve_ws_link(ws, self._ctx, user, self._links.add)
        else:
            await serve_webrtc_signaling(
                ws,
                self._ctx,
                user,
                on_link=self._links.add,
                on_peer=self._peers.add,
                on_peer_closed=self._peers.discard,
            )


async def _bounded(aw: Awaitable[object], what: str) -> None:
    """Await one shutdown stage, but never forever: a stuck peer must not hang the server."""
    try:
        await asyncio.wait_for(aw, _CLOSE_STAGE_S)
    except TimeoutError:
        log.warning("closing %s took over %.0f s; abandoned", what, _CLOSE_STAGE_S)
