"""The MQTT control plane of one node: presence, notifications, the outbox publisher.

::

    MqttBus(BusConfig(url | None, node, data_dir))
      url None ─► EmbeddedBroker on 127.0.0.1:<free port>     (one machine, nothing else)
      url mqtt://[user:pass@]host:port ─► Mosquitto 2         (several nodes)

      connection task (reconnects with backoff 0.5, 1, 2, 4, 5, 5 … s; never blocks the server)
        CONNECT  will = simulacra/v1/nodes/<node> {"state":"offline"} retained, QoS 1
        SUBSCRIBE simulacra/v1/users/+/inbox, simulacra/v1/nodes/+   (QoS 1, persistent session)
        PUBLISH  simulacra/v1/nodes/<node> {"state":"online"} retained
        ├─ publisher: outbox.claim ─► PUBLISH QoS 1 ─► PUBACK ─► outbox.mark_sent
        └─ receiver:  inbox message ─► de-dup by id ─► id ─► (user, inbox row) in the shared
                      database ─► on_notification(Notification)
                      presence message ─► bus.nodes

    notify(user, inbox_id) ─► notifications + outbox rows (SQLite) ─► wake the publisher
                              returns at once, broker or not

Notifications carry an opaque id and a timestamp, never a code or file content:
the receiving node looks the id up in the shared database and delivers the inbox
entry over the user's live channel. Delivery is at least once; the bus drops ids
it has already seen (and those it published itself: the node that made a share
delivers it locally first), and clients de-duplicate by id too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import random
import re
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from simulacra.errors import ConfigError, PayloadTooBig, ProtocolError
from simulacra.server.auth import check_name
from simulacra.server.broker import EmbeddedBroker
from simulacra.server.outbox import Outbox, retry_delay

__all__ = [
    "BusConfig",
    "MqttBus",
    "Notification",
    "MqttTarget",
    "NotificationHandler",
    "TOPIC_ROOT",
    "INBOX_FILTER",
    "PRESENCE_FILTER",
    "MAX_NOTIFICATION_BYTES",
    "MAX_KNOWN_NODES",
    "MQTT_OFF",
    "default_node_name",
    "check_node",
    "parse_mqtt_url",
    "presence_topic",
    "inbox_topic",
    "presence_payload",
    "notification_payload",
    "new_notification_id",
    "parse_notification",
    "parse_presence",
]

log = logging.getLogger("simulacra.bus")

TOPIC_ROOT = "simulacra/v1"
INBOX_FILTER = f"{TOPIC_ROOT}/users/+/inbox"
PRESENCE_FILTER = f"{TOPIC_ROOT}/nodes/+"
MAX_NOTIFICATION_BYTES = 1024  # an id and a timestamp; anything bigger is not ours
MAX_PRESENCE_BYTES = 2048
MQTT_OFF = "off"  # ServerConfig.mqtt value that runs no bus at all
DEFAULT_MQTT_PORT = 1883
_SEEN_IDS = 4096  # notification ids remembered for de-duplication
MAX_KNOWN_NODES = 1024  # presence of more nodes than this is ignored (anyone may publish one)

_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")

SENT_RETENTION_S = 86400.0  # sent outbox rows and notification ids are kept a day
PURGE_EVERY_S = 3600.0


@dataclass(frozen=True, slots=True)
class Notification:
    """An inbox entry announced over MQTT, resolved through the shared database."""

    id: str  # the opaque id on the wire
    user: str  # the recipient
    inbox_id: int  # the inbox row (server/files.py) to deliver
    created: float  # when it was enqueued


NotificationHandler = Callable[[Notification], Awaitable[None] | None]
"""``on_notification(n)``: push inbox row ``n.inbox_id`` to ``n.user``'s sockets on this node."""


# -- names, topics and payloads (pure) ---------------------------------------------------


def check_node(node: str) -> str:
    """A node name: 1-64 of letters, digits, ``_.-``; one MQTT topic level."""
    if not _NODE.fullmatch(node):
        raise ConfigError(f"invalid node name {node!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return node


def default_node_name() -> str:
    """``<hostname>-<pid>``, cleaned to a valid node name (``node1`` if nothing is left)."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).strip("-._")[:48]
    return f"{host}-{os.getpid()}" if host else "node1"


def presence_topic(node: str) -> str:
    return f"{TOPIC_ROOT}/nodes/{check_node(node)}"


def inbox_topic(user: str) -> str:
    # User names never hold '/', '+' or '#', so one name is exactly one topic level.
    return f"{TOPIC_ROOT}/users/{check_name(user)}/inbox"


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def presence_payload(node: str, state: str, ts: float, url: str = "") -> bytes:
    if state not in ("online", "offline"):
        raise ConfigError(f"presence state must be online or offline, got {state!r}")
    return _json({"node": check_node(node), "state": state, "ts": round(ts, 3), "url": url})


def new_notification_id() -> str:
    """128 random bits, URL-safe: opaque, unguessable, says nothing about its content."""
    return secrets.token_urlsafe(16)


def notification_payload(notification_id: str, ts: float) -> bytes:
    if not _ID.fullmatch(notification_id):
        raise ProtocolError(f"invalid notification id {notification_id[:80]!r}")
    return _json({"id": notification_id, "ts": round(ts, 3)})


def _topic_levels(topic: str, kind: str, count: int) -> list[str]:
    levels = topic.split("/")
    if len(levels) != count or "/".join(levels[:2]) != TOPIC_ROOT or levels[2] != kind:
        raise ProtocolError(f"not a simulacra {kind} topic: {topic[:120]!r}")
    return levels


def _load(payload: bytes, limit: int) -> dict[str, Any]:
    if len(payload) > limit:
        raise PayloadTooBig(f"MQTT payload is {len(payload)} bytes, the limit is {limit}")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"MQTT payload is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("MQTT payload is not a JSON object")
    return obj


def parse_notification(topic: str, payload: bytes) -> tuple[str, str]:
    """``(user, notification_id)`` of an inbox message; ``ProtocolError`` otherwise."""
    levels = _topic_levels(topic, "users", 5)
    if levels[4] != "inbox":
        raise ProtocolError(f"not an inbox topic: {topic[:120]!r}")
    try:
        user = check_name(levels[3])
    except ConfigError as exc:
        raise ProtocolError(str(exc)) from None
    obj = _load(payload, MAX_NOTIFICATION_BYTES)
    nid = obj.get("id")
    if not isinstance(nid, str) or not _ID.fullmatch(nid):
        raise ProtocolError("notification has no valid id")
    return user, nid


def parse_presence(topic: str, payload: bytes) -> dict[str, Any]:
    """The presence object of ``simulacra/v1/nodes/<node>``; ``ProtocolError`` otherwise."""
    node = _topic_levels(topic, "nodes", 4)[3]
    obj = _load(payload, MAX_PRESENCE_BYTES)
    if obj.get("node") != node or obj.get("state") not in ("online", "offline"):
        raise ProtocolError(f"malformed presence for node {node[:64]!r}")
    return obj


@dataclass(frozen=True, slots=True)
class MqttTarget:
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never print the password
        user = f"{self.username}@" if self.username else ""
        return f"MqttTarget(mqtt://{user}{self.host}:{self.port})"


def parse_mqtt_url(url: str) -> MqttTarget:
    """``mqtt://[user[:password]@]host[:port]`` (port 1883 when left out)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid MQTT URL: {exc}") from None
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ConfigError("MQTT URL must look like mqtt://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("MQTT URL takes no path, query or fragment")
    return MqttTarget(
        host=parts.hostname,
        port=port or DEFAULT_MQTT_PORT,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


# -- the bus ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BusConfig:
    """Where the broker is and who this node is; every field has a one-machine default."""

    url: str | None = None  # None: start the embedded broker
    node: str = field(default_factory=default_node_name)
    data_dir: Path = Path("data")
    public_url: str = ""  # this node's HTTP URL, published in its presence
    keepalive: int = 10  # seconds; a silent node is declared gone after 1.5x this
    timeout: float = 5.0  # seconds one broker round trip may take before the link counts as broken
    poll_interval: float = 1.0  # seconds between outbox looks for rows other processes enqueued
    retry_cap: float = 5.0  # longest wait between connection attempts
    embedded_port: int = 0  # embedded broker port; 0 picks a free one

    def __post_init__(self) -> None:
        check_node(self.node)
        if self.url is not None:
            parse_mqtt_url(self.url)
        if not isinstance(self.data_dir, Path):
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.keepalive < 1 or self.timeout <= 0 or self.poll_interval <= 0:
            raise ConfigError("keepalive, timeout and poll_interval must be positive")


class MqttBus:
    """``async with MqttBus(cfg, on_notification=deliver) as bus: await bus.notify(user, id)``.

    Entering never waits for a broker: the connection is made (and remade) by a
    background task, and everything published goes through the outbox.
    """

    def __init__(
        self,
        config: BusConfig,
        *,
        on_notification: NotificationHandler | None = None,
    ) -> None:
        self.config = config
        self.on_notification = on_notification
        self.nodes: dict[str, dict[str, Any]] = {}  # node -> last presence object seen
        self.published = 0  # outbox rows acknowledged by the broker through this bus
        self.delivered = 0  # notifications handed to on_notification
        self.duplicates = 0  # copies of an already seen notification id, dropped
        self.connects = 0  # successful broker sessions so far
        self._broker: EmbeddedBroker | None = None
        self._target: MqttTarget | None = None
        self._outbox: Outbox | None = None
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._seen: OrderedDict[str, None] = OrderedDict()  # ids delivered here
        self._own: OrderedDict[str, None] = OrderedDict()  # ids this node published
        self._closing = False
        self._last_purge = 0.0

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> MqttBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        cfg = self.config
        self._outbox = await asyncio.to_thread(Outbox, cfg.data_dir)
        try:
            if cfg.url is None:
                self._broker = EmbeddedBroker("127.0.0.1", cfg.embedded_port)
                await self._broker.start()
                self._target = MqttTarget("127.0.0.1", self._broker.port)
            else:
                self._target = parse_mqtt_url(cfg.url)
        except BaseException:
            self._outbox.close()
            self._outbox = None
            raise
        self._task = asyncio.create_task(self._run(), name=f"mqtt-bus-{cfg.node}")

    async def close(self) -> None:
        self._closing = True
        client = self._client
        if client is not None:
            # A clean exit announces itself; the will covers the unclean ones.
            with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
                await client.publish(
                    presence_topic(self.config.node),
                    self._presence("offline"),
                    qos=1,
                    retain=True,
                    timeout=self.config.timeout,
                )
                # Dropping the subscriptions stops the broker queueing for a session that may
                # never return (node names carry a pid).
                await client.unsubscribe(
                    [INBOX_FILTER, PRESENCE_FILTER], timeout=self.config.timeout
                )
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, self.config.timeout)
            self._task = None
        if self._broker is not None:
            await self._broker.close()
            self._broker = None
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None

    # -- public ----------------------------------------------------------------

    @property
    def node(self) -> str:
        return self.config.node

    @property
    def broker_url(self) -> str:
        """The broker this bus talks to (the embedded one's real port included), no password."""
        if self._target is None:
            return ""
        host = f"[{self._target.host}]" if ":" in self._target.host else self._target.host
        return f"mqtt://{host}:{self._target.port}"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Return once a broker session is up (callers put their own deadline around it)."""
        await self._connected.wait()

    async def notify(self, user: str, inbox_id: int) -> str:
        """Announce inbox row ``inbox_id`` to ``user``'s inbox topic; returns the notification id.

        Stored (id -> user, inbox row; and the message) before anything is published; never
        waits on the broker. Other nodes call their ``on_notification``; this one does not.
        """
        assert self._outbox is not None, "start() first"
        nid = new_notification_id()
        now = time.time()
        _remember(self._own, nid)
        await asyncio.to_thread(
            self._outbox.enqueue_notification,
            nid,
            user,
            inbox_id,
            inbox_topic(user),
            notification_payload(nid, now),
            now=now,
        )
        self._wake.set()
        return nid

    async def enqueue(self, topic: str, payload: bytes) -> str:
        """Store any message in the outbox and wake the publisher; returns the row id."""
        assert self._outbox is not None, "start() first"
        row_id = await asyncio.to_thread(self._outbox.enqueue, topic, payload)
        self._wake.set()
        return row_id

    def wake(self) -> None:
        """Publish now what callers inserted with ``outbox.insert_row`` in their own transaction."""
        self._wake.set()

    async def pending(self) -> int:
        """Outbox rows (from any node sharing the database) not yet acknowledged by a broker."""
        assert self._outbox is not None, "start() first"
        return await asyncio.to_thread(self._outbox.pending)

    def status(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "broker": self.broker_url,
            "embedded": self._broker is not None,
            "connected": self.connected,
            "published": self.published,
            "delivered": self.delivered,
            "duplicates": self.duplicates,
            "nodes": {name: obj.get("state") for name, obj in sorted(self.nodes.items())},
        }

    # -- connection ------------------------------------------------------------

    def _presence(self, state: str) -> bytes:
        return presence_payload(self.node, state, time.time(), self.config.public_url)

    async def _run(self) -> None:
        failures = 0
        while True:
            before = self.connects
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                level = logging.WARNING if failures == 0 else logging.DEBUG
                log.log(level, "MQTT broker %s unreachable: %s; retrying", self.broker_url, exc)
            except Exception:  # a bug must not end the control plane; it retries like an outage
                log.exception("MQTT bus session failed")
            failures = 1 if self.connects > before else failures + 1
            # Jitter keeps a restarted broker from being hit by every node at once.
            delay = min(self.config.retry_cap, retry_delay(failures))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _session(self) -> None:
        cfg = self.config
        target = self._target
        assert target is not None
        client = aiomqtt.Client(
            target.host,
            target.port,
            username=target.username,
            password=target.password,
            identifier=f"simulacra-{cfg.node}",
            # A persistent session: the broker queues QoS 1 notifications while we reconnect.
            clean_session=False,
            will=aiomqtt.Will(
                presence_topic(cfg.node), self._presence("offline"), qos=1, retain=True
            ),
            keepalive=cfg.keepalive,
            timeout=cfg.timeout,
            # Small packets both ways: Nagle plus delayed ACKs would add ~40 ms per hop.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        async with client:
            self._client = client
            try:
                await client.subscribe([(INBOX_FILTER, 1), (PRESENCE_FILTER, 1)])
                await client.publish(
                    presence_topic(cfg.node), self._presence("online"), qos=1, retain=True
                )
                self.connects += 1
                self._connected.set()
                log.info("MQTT bus of node %s connected to %s", cfg.node, self.broker_url)
                tasks = [
                    asyncio.create_task(self._receive(client)),
                    asyncio.create_task(self._publish(client)),
                ]
                try:
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                for task in done:
                    task.result()
            finally:
                self._client = None
                self._connected.clear()

    async def _publish(self, client: aiomqtt.Client) -> None:
        outbox = self._outbox
        assert outbox is not None
        while True:
            if time.time() - self._last_purge > PURGE_EVERY_S:
                self._last_purge = time.time()
                await asyncio.to_thread(outbox.purge_sent, self._last_purge - SENT_RETENTION_S)
            # Cleared before looking, so a notify() during the look is not lost.
            self._wake.clear()
            rows = await asyncio.to_thread(outbox.claim, self.node)
            if not rows:
                due = await asyncio.to_thread(outbox.next_due)
                wait = self.config.poll_interval
                if due is not None:
                    wait = min(wait, max(0.01, due - time.time()))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            left = [row.id for row in rows]
            try:
                for row in rows:
                    await client.publish(row.topic, row.payload, qos=1)
                    # PUBACK received: the broker owns delivery from here.
                    await asyncio.to_thread(outbox.mark_sent, row.id)
                    left.pop(0)
                    self.published += 1
            finally:
                if left:
                    # Not via a thread: this also runs while the task is being cancelled.
                    outbox.release(left)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                continue
            try:
                if topic.startswith(f"{TOPIC_ROOT}/nodes/"):
                    obj = parse_presence(topic, bytes(payload))
                    if obj["node"] not in self.nodes and len(self.nodes) >= MAX_KNOWN_NODES:
                        raise PayloadTooBig(f"presence of over {MAX_KNOWN_NODES} nodes")
                    self.nodes[obj["node"]] = obj
                    if obj["node"] == self.node and obj["state"] == "offline" and not self._closing:
                        # A will of an older session of ours (a broker restored from its
                        # persistence fires it late) must not outlive this live session.
                        await client.publish(
                            presence_topic(self.node), self._presence("online"), qos=1, retain=True
                        )
                    continue
                user, nid = parse_notification(topic, bytes(payload))
            except ProtocolError as exc:
                log.warning("dropping MQTT message on %s: %s", topic[:120], exc)
                continue
            if nid in self._own:
                continue
            if nid in self._seen:
                self.duplicates += 1
                continue
            await self._deliver(user, nid)

    async def _deliver(self, user: str, nid: str) -> None:
        handler = self.on_notification
        if handler is None or self._outbox is None:
            return
        found = await asyncio.to_thread(self._outbox.lookup_notification, nid)
        if found is None or found[0] != user:
            # Another deployment's broker, a forged id, or a purged one: nothing to deliver.
            log.warning("dropping notification %s: no such notification for %s", nid, user)
            return
        # Remembered only once resolved, so a bogus copy cannot shadow the real one.
        _remember(self._seen, nid)
        note = Notification(nid, user, found[1], found[2])
        try:
            result = handler(note)
            if inspect.isawaitable(result):
                await result
        except Exception:  # one bad delivery must not stop the others
            log.exception("on_notification(%r) failed", note)
            return
        self.delivered += 1


def _remember(ids: OrderedDict[str, None], nid: str) -> None:
    ids[nid] = None
    if len(ids) > _SEEN_IDS:
        ids.popitem(last=False)
