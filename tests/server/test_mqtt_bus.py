"""The MQTT control plane against real brokers: the embedded amqtt one and a Mosquitto 2
that the tests start on a free loopback port.

::

    node A (MqttBus) ──outbox──► broker ──► node B (MqttBus) ─► on_notification(user, id)
                         simulacra/v1/users/<user>/inbox   {"id","ts"}
    node (subprocess) ─ retained presence, will ─► simulacra/v1/nodes/<node>  ◄─ observer
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulacra.errors import ConfigError, PayloadTooBig, ProtocolError
from simulacra.server.broker import EmbeddedBroker, free_port
from simulacra.server.bus import (
    INBOX_FILTER,
    MAX_NOTIFICATION_BYTES,
    BusConfig,
    MqttBus,
    MqttTarget,
    Notification,
    check_node,
    default_node_name,
    inbox_topic,
    new_notification_id,
    notification_payload,
    parse_mqtt_url,
    parse_notification,
    parse_presence,
    presence_payload,
    presence_topic,
)
from simulacra.server.outbox import Outbox
from simulacra.server.store import DB_FILE

REPO = Path(__file__).resolve().parents[2]
ACL_FILE = REPO / "docker" / "mosquitto" / "acl"
DEADLINE = 20.0  # seconds; generous, for a loaded 2-core CI machine


def _find(tool: str) -> str | None:
    return shutil.which(tool, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")


MOSQUITTO = _find("mosquitto")
MOSQUITTO_PASSWD = _find("mosquitto_passwd")
needs_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed")


# -- names, topics, payloads --------------------------------------------------------------


def test_topics_and_payloads_are_exact() -> None:
    assert presence_topic("node1") == "simulacra/v1/nodes/node1"
    assert inbox_topic("alice") == "simulacra/v1/users/alice/inbox"
    assert INBOX_FILTER == "simulacra/v1/users/+/inbox"
    assert presence_payload("node1", "online", 1700000000.25, "http://127.0.0.1:8080") == (
        b'{"node":"node1","state":"online","ts":1700000000.25,"url":"http://127.0.0.1:8080"}'
    )
    assert notification_payload("AAAAAAAAAAAAAAAAAAAAAA", 1700000000.1234) == (
        b'{"id":"AAAAAAAAAAAAAAAAAAAAAA","ts":1700000000.123}'
    )


def test_names_that_would_escape_their_topic_level_are_refused() -> None:
    for user in ("", "a/b", "+", "#", "a+b", "x" * 65):
        with pytest.raises(ConfigError):
            inbox_topic(user)
    for node in ("", "a/b", "+", "#", "-x", "x" * 65):
        with pytest.raises(ConfigError):
            check_node(node)
    assert check_node(default_node_name())


def test_notification_ids_are_opaque_and_unguessable() -> None:
    ids = {new_notification_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 22 for i in ids)  # 128 bits, URL-safe base64


_users = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True)
_ids = st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True)


@given(_users, _ids, st.floats(min_value=0, max_value=2**40))
def test_notification_round_trip(user: str, nid: str, ts: float) -> None:
    assert parse_notification(inbox_topic(user), notification_payload(nid, ts)) == (user, nid)


def test_malformed_notifications_are_refused() -> None:
    ok = notification_payload("AAAAAAAAAAAAAAAAAAAAAA", 1.0)
    with pytest.raises(PayloadTooBig):
        parse_notification(inbox_topic("bob"), b" " * (MAX_NOTIFICATION_BYTES + 1))
    bad: list[tuple[str, bytes]] = [
        ("simulacra/v1/users/bob/outbox", ok),
        ("simulacra/v2/users/bob/inbox", ok),
        ("simulacra/v1/users/bob/inbox/x", ok),
        ("simulacra/v1/users/+/inbox", ok),
        (inbox_topic("bob"), b"not json"),
        (inbox_topic("bob"), b"\xff\xfe"),
        (inbox_topic("bob"), b"[1]"),
        (inbox_topic("bob"), b'{"ts":1}'),
        (inbox_topic("bob"), b'{"id":"short"}'),
        (inbox_topic("bob"), b'{"id":"has/slash/has/slash"}'),
        (inbox_topic("bob"), b'{"id":12345678901}'),
    ]
    for topic, payload in bad:
        with pytest.raises(ProtocolError):
            parse_notification(topic, payload)
    with pytest.raises(ProtocolError):
        notification_payload("bad id!", 1.0)


def test_presence_must_name_its_own_node() -> None:
    payload = presence_payload("a", "offline", 5.0)
    assert parse_presence("simulacra/v1/nodes/a", payload)["state"] == "offline"
    with pytest.raises(ProtocolError):
        parse_presence("simulacra/v1/nodes/b", payload)
    with pytest.raises(ConfigError):
        presence_payload("a", "away", 5.0)


def test_mqtt_urls() -> None:
    assert parse_mqtt_url("mqtt://broker") == MqttTarget("broker", 1883)
    assert parse_mqtt_url("mqtt://127.0.0.1:18830/") == MqttTarget("127.0.0.1", 18830)
    assert parse_mqtt_url("mqtt://sim%40x:p%3Aw@[::1]:2000") == MqttTarget(
        "::1", 2000, "sim@x", "p:w"
    )
    assert "p:w" not in repr(parse_mqtt_url("mqtt://u:p%3Aw@h"))
    for url in (
        "http://h:1883",
        "mqtt://",
        "mqtt://h:99999",
        "mqtt://h:1/x",
        "mqtt://h?x=1",
        "h:1883",
    ):
        with pytest.raises(ConfigError):
            parse_mqtt_url(url)
    with pytest.raises(ConfigError):
        BusConfig("tcp://h", "n1")
    with pytest.raises(ConfigError):
        BusConfig(None, "bad/node")


# -- brokers ------------------------------------------------------------------------------


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """A mosquitto process on a free loopback port, restartable on the same port."""

    def __init__(self, workdir: Path, settings: str = "allow_anonymous true\n") -> None:
        assert MOSQUITTO is not None
        self.workdir = workdir
        self.settings = settings
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        (workdir / "data").mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        # A probed port can be taken before mosquitto binds it; then probe again.
        for _ in range(5):
            port = self.port or free_port()
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(
                f"listener {port} 127.0.0.1\n"
                f"persistence true\npersistence_location {self.workdir / 'data'}/\n"
                f"log_dest file {self.workdir / 'mosquitto.log'}\n"
                # Started as root, mosquitto would switch to a user that cannot read tmp_path.
                f"user {pwd.getpwuid(os.getuid()).pw_name}\n" + self.settings
            )
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _port_open(port):
                    self.port = port
                    return
                time.sleep(0.02)  # polling a port with a deadline
            if self.proc.poll() is None:
                self.proc.kill()
            err = self.proc.communicate()[1].decode(errors="replace")
            if self.port:
                break
        raise RuntimeError(f"mosquitto did not start: {err.strip()[-500:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # saves persistent sessions, like a real restart
            self.proc.wait(timeout=DEADLINE)
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(params=["embedded", pytest.param("mosquitto", marks=needs_mosquitto)])
async def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "embedded":
        async with EmbeddedBroker() as broker:
            yield broker.url
    else:
        yield request.getfixturevalue("mosquitto").url


async def _next_message(client: aiomqtt.Client, timeout: float = DEADLINE) -> aiomqtt.Message:
    async def first() -> aiomqtt.Message:
        async for message in client.messages:
            return message
        raise AssertionError("unreachable")

    return await asyncio.wait_for(first(), timeout)


async def _poll(predicate: Any, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# -- presence -----------------------------------------------------------------------------

_NODE_SCRIPT = """
import asyncio, sys
from pathlib import Path
from simulacra.server.bus import BusConfig, MqttBus

async def main():
    cfg = BusConfig(sys.argv[1], sys.argv[2], Path(sys.argv[3]), public_url="http://node:1")
    async with MqttBus(cfg) as bus:
        await bus.wait_connected()
        print("connected", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.mqtt
async def test_presence_is_retained_and_flips_offline_when_the_node_is_killed(
    broker_url: str, tmp_path: Path
) -> None:
    target = parse_mqtt_url(broker_url)
    node = "killed-node"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _NODE_SCRIPT, broker_url, node, str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), DEADLINE)
        assert line == b"connected\n"
        async with aiomqtt.Client(target.host, target.port) as observer:
            await observer.subscribe(presence_topic(node), qos=1)
            online = await _next_message(observer)
            assert online.retain
            assert isinstance(online.payload, bytes)
            obj = json.loads(online.payload)
            assert (obj["node"], obj["state"], obj["url"]) == (node, "online", "http://node:1")
            # SIGKILL: no DISCONNECT reaches the broker, so the will is published.
            proc.kill()
            await proc.wait()
            # Presence is state: a repeated "online" (amqtt may resend the retained copy) is fine.
            states = [json.loads(_bytes(await _next_message(observer)))["state"]]
            while states[-1] == "online":
                states.append(json.loads(_bytes(await _next_message(observer)))["state"])
            assert states[-1] == "offline"
        async with aiomqtt.Client(target.host, target.port) as late:
            await late.subscribe(presence_topic(node), qos=1)
            retained = await _next_message(late)
            assert retained.retain
            assert isinstance(retained.payload, bytes)
            assert json.loads(retained.payload)["state"] == "offline"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.mqtt
async def test_a_clean_close_announces_offline(broker_url: str, tmp_path: Path) -> None:
    target = parse_mqtt_url(broker_url)
    async with MqttBus(BusConfig(broker_url, "polite", tmp_path)) as bus:
        await asyncio.wait_for(bus.wait_connected(), DEADLINE)
    async with aiomqtt.Client(target.host, target.port) as observer:
        await observer.subscribe(presence_topic("polite"), qos=1)
        message = await _next_message(observer)
        assert isinstance(message.payload, bytes)
        assert json.loads(message.payload)["state"] == "offline"


# -- notifications ------------------------------------------------------------------------


class Inbox:
    """An on_notification callback that records what arrived, and when."""

    def __init__(self) -> None:
        self.got: list[tuple[Notification, float]] = []
        self.changed = asyncio.Event()

    def __call__(self, note: Notification) -> None:
        self.got.append((note, time.perf_counter()))
        self.changed.set()

    async def wait_for(self, count: int, timeout: float = DEADLINE) -> None:
        async def wait() -> None:
            while len(self.got) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)


@pytest.mark.mqtt
@pytest.mark.parametrize("kind", ["embedded", pytest.param("mosquitto", marks=needs_mosquitto)])
async def test_notification_crosses_nodes_sharing_one_data_dir(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Embedded: node A runs the broker, node B connects to it, as two `serve` on one machine.
    url = None if kind == "embedded" else request.getfixturevalue("mosquitto").url
    inbox = Inbox()
    async with MqttBus(BusConfig(url, "node-a", tmp_path)) as a:
        cfg_b = BusConfig(a.broker_url, "node-b", tmp_path)
        async with MqttBus(cfg_b, on_notification=inbox) as b:
            await asyncio.wait_for(a.wait_connected(), DEADLINE)
            await asyncio.wait_for(b.wait_connected(), DEADLINE)
            sent, latencies = [], []
            for i in range(5):
                t0 = time.perf_counter()
                sent.append(await a.notify("bob", inbox_id=100 + i))
                await inbox.wait_for(i + 1)
                latencies.append((inbox.got[-1][1] - t0) * 1000)
            # Node B resolved each opaque id to the inbox row through the shared database.
            assert [(n.id, n.user, n.inbox_id) for n, _ in inbox.got] == [
                (nid, "bob", 100 + i) for i, nid in enumerate(sent)
            ]
            print(
                f"\ncross-node latency ({kind}): "
                + ", ".join(f"{ms:.1f}" for ms in latencies)
                + " ms"
            )

            async def drained() -> bool:
                return await a.pending() == 0

            await _poll(drained, "the outbox to drain")

            async def sees_both() -> bool:
                return a.status()["nodes"] == {"node-a": "online", "node-b": "online"}

            await _poll(sees_both, "node A to see both nodes online")
            assert b.status()["delivered"] == 5
            assert a.status()["delivered"] == 0  # the sender's node delivers locally, not via MQTT


@pytest.mark.mqtt
async def test_duplicates_unknown_ids_and_a_failing_handler(tmp_path: Path) -> None:
    calls: list[tuple[str, str, int]] = []

    async def handler(note: Notification) -> None:
        calls.append((note.id, note.user, note.inbox_id))
        if note.id.startswith("boom"):
            raise RuntimeError("delivery failed")

    async with MqttBus(BusConfig(None, "solo", tmp_path), on_notification=handler) as bus:
        await asyncio.wait_for(bus.wait_connected(), DEADLINE)
        # Enqueued by another process sharing the database (e.g. a second node).
        with Outbox(tmp_path) as other:
            for n, nid in enumerate(("boom-0000000", "dup-00000000", "last-0000000"), 1):
                other.enqueue_notification(
                    nid, "bob", n, inbox_topic("bob"), notification_payload(nid, 1.0)
                )
            db = sqlite3.connect(tmp_path / DB_FILE)
            db.executemany(
                "INSERT INTO notifications (id, user, inbox_id, created) VALUES (?, ?, ?, ?)",
                [
                    ("carol-000000", "carol", 4, time.time()),
                    ("end-00000000", "bob", 5, time.time()),
                ],
            )
            db.commit()
            db.close()
        bus.wake()

        async def first_three() -> bool:
            return len(calls) == 3

        await _poll(first_three, "the enqueued notifications")
        target = parse_mqtt_url(bus.broker_url)
        async with aiomqtt.Client(target.host, target.port) as raw:
            for topic, payload in [
                (inbox_topic("bob"), notification_payload("dup-00000000", 2.0)),  # a duplicate
                (inbox_topic("bob"), b"garbage"),
                (inbox_topic("bob"), notification_payload("unknown-0000", 1.0)),  # not in the db
                (inbox_topic("bob"), notification_payload("carol-000000", 1.0)),  # not bob's
                (inbox_topic("bob"), notification_payload("end-00000000", 1.0)),
            ]:
                await raw.publish(topic, payload, qos=1)

        async def arrived() -> bool:
            return len(calls) == 4

        await _poll(arrived, "the last notification")
        assert calls == [
            ("boom-0000000", "bob", 1),
            ("dup-00000000", "bob", 2),
            ("last-0000000", "bob", 3),
            ("end-00000000", "bob", 5),
        ]
        status = bus.status()
        assert (status["delivered"], status["duplicates"]) == (3, 1)  # the failing one not counted


async def test_the_bus_never_waits_for_a_missing_broker(tmp_path: Path) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    async with MqttBus(BusConfig(url, "lonely", tmp_path)) as bus:
        ids = [await asyncio.wait_for(bus.notify("bob", i), DEADLINE) for i in range(3)]
        assert len(set(ids)) == 3
        assert not bus.connected
        assert await bus.pending() == 3
        assert bus.status()["connected"] is False


# -- outage -------------------------------------------------------------------------------


async def _outage(tmp_path: Path, outage_s: float, retry_cap: float) -> None:
    assert MOSQUITTO is not None
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    inbox = Inbox()
    data = tmp_path / "data"
    try:
        cfg_a = BusConfig(broker.url, "node-a", data, retry_cap=retry_cap)
        cfg_b = BusConfig(broker.url, "node-b", data, retry_cap=retry_cap)
        async with MqttBus(cfg_a) as a, MqttBus(cfg_b, on_notification=inbox) as b:
            await asyncio.wait_for(a.wait_connected(), DEADLINE)
            await asyncio.wait_for(b.wait_connected(), DEADLINE)
            sent = [await a.notify("bob", i) for i in range(3)]
            await inbox.wait_for(3)

            async def drained() -> bool:
                return await a.pending() == 0

            await _poll(drained, "the first notifications to be acknowledged")
            broker.stop()

            async def both_down() -> bool:
                return not a.connected and not b.connected

            await _poll(both_down, "both nodes to notice the outage")
            # Shares keep being created while the broker is away: notify() returns at once.
            end = time.monotonic() + outage_s
            while time.monotonic() < end:
                sent.append(await asyncio.wait_for(a.notify("bob", len(sent)), DEADLINE))
                # The outage's length is the scenario, not a wait for state.
                await asyncio.sleep(0.25)
            assert await a.pending() == len(sent) - 3
            restarted = time.perf_counter()
            broker.start()  # same port, same persistence directory

            await inbox.wait_for(len(sent), timeout=DEADLINE + 2 * retry_cap)
            after = (inbox.got[-1][1] - restarted) * 1000
            delivered = [(n.id, n.inbox_id) for n, _ in inbox.got]
            assert delivered == [(nid, i) for i, nid in enumerate(sent)]  # all, in order, once
            print(
                f"\noutage {outage_s:.0f} s: {len(sent) - 3} notifications queued, all delivered "
                f"{after:.0f} ms after the broker came back; "
                f"{b.status()['duplicates']} duplicate copies dropped by id"
            )
            await _poll(drained, "the outbox to drain")
            target = parse_mqtt_url(broker.url)
            async with aiomqtt.Client(target.host, target.port) as observer:
                await observer.subscribe(presence_topic("node-a"), qos=1)
                # Stopping, mosquitto fired node A's will, and restarting it redelivers that
                # "offline"; node A answers every stale "offline" about itself with "online".
                state = ""
                while state != "online":
                    state = json.loads(_bytes(await _next_message(observer)))["state"]
    finally:
        broker.stop()


@pytest.mark.mqtt
@needs_mosquitto
async def test_notifications_enqueued_during_a_short_outage_all_arrive_once(tmp_path: Path) -> None:
    await _outage(tmp_path, outage_s=2.0, retry_cap=1.0)


@pytest.mark.mqtt
@pytest.mark.slow
@needs_mosquitto
async def test_notifications_enqueued_during_a_ten_second_outage_all_arrive_once(
    tmp_path: Path,
) -> None:
    await _outage(tmp_path, outage_s=10.0, retry_cap=5.0)


# -- ACLs ---------------------------------------------------------------------------------


@pytest.mark.mqtt
@needs_mosquitto
@pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd is not installed")
async def test_a_user_cannot_read_another_users_inbox(tmp_path: Path) -> None:
    assert MOSQUITTO_PASSWD is not None
    passwd = tmp_path / "passwd"
    passwd.touch(mode=0o600)
    logins = {"simulacra": "server-secret", "alice": "alice-pw", "bob": "bob-pw"}
    for user, password in logins.items():
        subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), user, password], check=True)
    broker = Mosquitto(
        tmp_path,
        f"allow_anonymous false\npassword_file {passwd}\nacl_file {ACL_FILE}\n",
    )
    broker.start()
    try:
        port = broker.port
        server_url = f"mqtt://simulacra:server-secret@127.0.0.1:{port}"
        async with (
            MqttBus(BusConfig(server_url, "node-a", tmp_path / "data")) as bus,
            aiomqtt.Client("127.0.0.1", port, username="alice", password="alice-pw") as alice,
            aiomqtt.Client("127.0.0.1", port, username="bob", password="bob-pw") as bob,
        ):
            await asyncio.wait_for(bus.wait_connected(), DEADLINE)
            # Mosquitto 2.0.11 grants the SUBACK and filters every message by the reader's ACL;
            # brokers that check at subscribe time answer 0x80. Either way nothing may arrive.
            refused = await bob.subscribe(inbox_topic("alice"), qos=1)
            assert [_code(rc) for rc in refused] in ([0x80], [1])
            assert [_code(rc) for rc in await bob.subscribe(inbox_topic("bob"), qos=1)] == [1]
            assert [_code(rc) for rc in await alice.subscribe(inbox_topic("alice"), qos=1)] == [1]
            # Bob cannot forge a notification into Alice's inbox either (dropped by the broker).
            await bob.publish(inbox_topic("alice"), notification_payload("forged-0000", 1.0), qos=1)

            for_alice = await bus.notify("alice", 1)
            for_bob = await bus.notify("bob", 2)  # published after Alice's, on the same connection
            got_alice = await _next_message(alice)
            got_bob = await _next_message(bob)
            # Bob's own message arrived, and Alice's (sent before it) never reached him.
            assert parse_notification(got_alice.topic.value, _bytes(got_alice)) == (
                "alice",
                for_alice,
            )
            assert parse_notification(got_bob.topic.value, _bytes(got_bob)) == ("bob", for_bob)
            assert len(bob.messages) == 0
            assert len(alice.messages) == 0

        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", port, timeout=5):
                pass  # anonymous: refused at CONNECT
    finally:
        broker.stop()


def _code(rc: Any) -> int:
    return int(getattr(rc, "value", rc))


def _bytes(message: aiomqtt.Message) -> bytes:
    assert isinstance(message.payload, bytes)
    return message.payload


@pytest.mark.mqtt
async def test_presence_of_too_many_nodes_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Anyone on the broker may publish presence: the table of known nodes stays bounded.
    from simulacra.server import bus as bus_module

    monkeypatch.setattr(bus_module, "MAX_KNOWN_NODES", 2)
    async with MqttBus(BusConfig(None, "solo", tmp_path)) as bus:
        await asyncio.wait_for(bus.wait_connected(), DEADLINE)

        async def sees_itself() -> bool:
            return "solo" in bus.status()["nodes"]

        await _poll(sees_itself, "the node's own presence")
        target = parse_mqtt_url(bus.broker_url)
        async with aiomqtt.Client(target.host, target.port) as raw:
            for node, state in [("n1", "online"), ("n2", "online"), ("n1", "offline")]:
                payload = presence_payload(node, state, 1.0)
                await raw.publish(presence_topic(node), payload, qos=1)

        async def n1_went_offline() -> bool:
            return bus.status()["nodes"].get("n1") == "offline"

        await _poll(n1_went_offline, "n1's second presence")
        assert bus.status()["nodes"] == {"n1": "offline", "solo": "online"}
