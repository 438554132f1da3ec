"""Two server nodes on one machine: one data directory, one broker (node A's embedded one).

::

    alice ─/api─► node A: share to bob ─► inbox row ─► bus.notify ─► outbox ─► broker
    bob   ◄─/api─ node B: on_notification ─► inbox row by id ─► {"op":"inbox", ...}
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import fields
from pathlib import Path

import pytest
from server_testkit import DEADLINE_S, running_server, wait_until

from simulacra.client.files_api import FilesClient
from simulacra.server import ServerConfig
from simulacra.server.broker import free_port

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(
        "mqtt" not in {f.name for f in fields(ServerConfig)},
        reason="the server does not run the MQTT bus yet (server.py/cli.py hooks of issue 7)",
    ),
]


async def test_a_share_on_node_a_reaches_its_recipient_on_node_b(tmp_path: Path) -> None:
    async with running_server(tmp_path, node="node-a") as a:
        assert a.bus is not None
        async with running_server(tmp_path, node="node-b", mqtt=a.bus.broker_url) as b:
            assert b.bus is not None
            await wait_until(lambda: a.bus.connected and b.bus.connected, "both buses")
            alice = a.add_user("alice")
            bob = b.add_user("bob")  # one database: a user of either node is a user of both
            async with FilesClient(b.url, bob) as bob_api, FilesClient(a.url, alice) as alice_api:
                entry = await alice_api.put(b"the file's bytes", name="notes.txt")
                t0 = time.perf_counter()
                reply = await alice_api.share(entry["id"], to="bob")
                assert reply["delivered"] is False  # bob is not connected to node A
                item = await asyncio.wait_for(bob_api.inbox_items.get(), DEADLINE_S)
                latency_ms = (time.perf_counter() - t0) * 1000
                print(f"\nshare on node A -> inbox on node B: {latency_ms:.1f} ms")
                assert (item["from"], item["name"], item["size"]) == ("alice", "notes.txt", 16)
                assert "code" not in item
                got = await bob_api.redeem(inbox=item["inbox"])
                assert (got["name"], got["rights"]) == ("notes.txt", "view")
            both = {"node-a": "online", "node-b": "online"}
            await wait_until(lambda: a.status()["mqtt"]["nodes"] == both, "presence of both")
            assert a.status()["mqtt"]["node"] == "node-a"


async def test_a_node_starts_and_shares_while_its_broker_is_down(tmp_path: Path) -> None:
    dead = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    async with running_server(tmp_path, node="node-a", mqtt=dead) as a:
        assert a.bus is not None and not a.bus.connected
        alice, _ = a.add_user("alice"), a.add_user("bob")
        async with FilesClient(a.url, alice) as alice_api:
            entry = await alice_api.put(b"x" * 100, name="x.bin")
            reply = await asyncio.wait_for(alice_api.share(entry["id"], to="bob"), DEADLINE_S)
        assert reply["to"] == "bob"
        assert await a.bus.pending() == 1  # waits in the outbox for the broker
