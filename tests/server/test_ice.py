"""ICE servers: config checks, TURN REST-API credentials, the "ice" frame, STUN end to end."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCIceServer
from server_testkit import DEADLINE_S, ProtoClient, http_get, recv_ice, running_server, ws_url
from websockets.asyncio.client import connect

from simulacra.client.headless import ClientOptions, HeadlessClient
from simulacra.errors import ConfigError
from simulacra.server.config import ServerConfig
from simulacra.server.ice import (
    IceHealth,
    IceSettings,
    ice_servers_for,
    probe_ice_servers,
    rtc_ice_servers,
    turn_credentials,
)

SECRET = "s3cret-shared-with-coturn"
NOW = 1_700_000_000

# -- config --------------------------------------------------------------------------------


def test_config_defaults_to_no_ice_servers() -> None:
    config = ServerConfig()
    assert (config.ice_servers, config.turn_secret, config.turn_ttl) == ((), "", 3600.0)


def test_config_accepts_the_four_schemes() -> None:
    urls = (
        "stun:stun.example.org:3478",
        "stuns:stun.example.org",
        "turn:10.0.0.1:3478?transport=udp",
        "turns:turn.example.org:5349?transport=tcp",
    )
    assert ServerConfig(ice_servers=urls, turn_secret=SECRET).ice_servers == urls
    # a list is kept as a tuple: the config stays hashable and frozen
    listed = ServerConfig(ice_servers=["stun:h:1"])  # type: ignore[arg-type]
    assert listed.ice_servers == ("stun:h:1",)


@pytest.mark.parametrize(
    ("urls", "error"),
    [
        (("http://h:1",), "must start with stun:, stuns:, turn: or turns:"),
        (("STUN:h:1",), "must start with stun:"),
        (("stun:h :1",), "whitespace"),
        (("stun:h:1\n",), "whitespace"),
        (("",), "empty"),
        (("stun:",), "is not scheme:host"),
        (("stun:[::1]:3478",), "is not scheme:host"),
        (("stun:h:0",), "port outside 1..65535"),
        (("stun:h:70000",), "port outside 1..65535"),
        (("stun:h:1?transport=udp",), "only turn: and turns: take a transport"),
        (("turn:h:1?transport=sctp",), "is not scheme:host"),
        (("stun:" + "h" * 252,), "longer than 256 characters"),
        (tuple(f"stun:h{i}:1" for i in range(17)), "at most 16 ICE servers, got 17"),
    ],
)
def test_config_refuses_bad_ice_servers(urls: tuple[str, ...], error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace("?", r"\?")):
        ServerConfig(ice_servers=urls, turn_secret=SECRET)


def test_config_takes_sixteen_urls_of_256_characters() -> None:
    url = "stun:" + "h" * 251
    assert len(url) == 256
    assert len(ServerConfig(ice_servers=(url,) * 16).ice_servers) == 16


@pytest.mark.parametrize("url", ["turn:h:3478", "turns:h:5349"])
def test_config_refuses_turn_without_a_secret(url: str) -> None:
    with pytest.raises(ConfigError, match="needs turn_secret"):
        ServerConfig(ice_servers=(url,))
    assert ServerConfig(ice_servers=("stun:h:3478",)).turn_secret == ""  # STUN needs none


@pytest.mark.parametrize("ttl", [0.0, -1.0, 59.0, float("nan"), float("inf")])
def test_config_refuses_a_bad_turn_ttl(ttl: float) -> None:
    with pytest.raises(ConfigError, match="turn_ttl"):
        ServerConfig(turn_ttl=ttl)


def test_the_secret_stays_out_of_reprs() -> None:
    config = ServerConfig(ice_servers=("turn:h:3478",), turn_secret=SECRET)
    assert SECRET not in repr(config)
    assert SECRET not in repr(IceSettings.from_config(config))


# -- credentials ---------------------------------------------------------------------------


def expected_credential(secret: str, username: str) -> str:
    """RFC-draft TURN REST API, as coturn checks it: base64(HMAC-SHA1(secret, username))."""
    mac = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def test_turn_credentials_are_the_rest_api_hmac() -> None:
    username, credential = turn_credentials(SECRET, "alice", NOW + 60)
    assert username == f"{NOW + 60}:alice"
    assert credential == expected_credential(SECRET, username)
    assert len(base64.b64decode(credential)) == 20  # an SHA-1 digest


def test_ice_servers_group_stun_and_turn_and_sign_only_turn() -> None:
    settings = IceSettings(
        urls=("stun:a:3478", "turn:b:3478?transport=udp", "stuns:c", "turns:d:5349"),
        turn_secret=SECRET,
        turn_ttl=600.0,
    )
    servers = ice_servers_for(settings, "alice", NOW)
    stun, turn = servers
    assert stun == {"urls": ["stun:a:3478", "stuns:c"]}  # no credentials on STUN
    assert turn["urls"] == ["turn:b:3478?transport=udp", "turns:d:5349"]
    expiry, user = turn["username"].split(":", 1)
    assert (int(expiry), user) == (NOW + 600, "alice")
    assert turn["credential"] == expected_credential(SECRET, turn["username"])
    assert set(turn) == {"urls", "username", "credential"}
    assert SECRET not in json.dumps(servers)


def test_ice_servers_only_stun_only_turn_or_none() -> None:
    assert ice_servers_for(IceSettings(), "u", NOW) == []
    assert ice_servers_for(IceSettings(("stun:a:1",)), "u", NOW) == [{"urls": ["stun:a:1"]}]
    (turn,) = ice_servers_for(IceSettings(("turn:a:1",), SECRET, 1.0), "u", NOW)
    assert turn["username"] == f"{NOW + 1}:u"


def test_each_user_and_moment_gets_its_own_credential() -> None:
    settings = IceSettings(("turn:a:1",), SECRET, 3600.0)
    (alice,) = ice_servers_for(settings, "alice", NOW)
    (bob,) = ice_servers_for(settings, "bob", NOW)
    (later,) = ice_servers_for(settings, "alice", NOW + 1)
    assert len({alice["credential"], bob["credential"], later["credential"]}) == 3


def test_rtc_ice_servers_for_our_own_peer() -> None:
    settings = IceSettings(("stun:a:1", "turn:b:2"), SECRET, 60.0)
    stun, turn = rtc_ice_servers(ice_servers_for(settings, "u", NOW))
    assert stun == RTCIceServer(urls=["stun:a:1"])
    assert turn.urls == ["turn:b:2"]
    assert turn.username == f"{NOW + 60}:u"
    assert turn.credential == expected_credential(SECRET, turn.username)
    # The server's own peer allocates no relay: STUN only.
    assert rtc_ice_servers(ice_servers_for(settings, "u", NOW), stun_only=True) == [stun]


# -- the "ice" frame -----------------------------------------------------------------------


async def test_signaling_sends_the_ice_list_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    urls = ("stun:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=udp")
    async with running_server(tmp_path, ice_servers=urls, turn_secret=SECRET) as srv:
        async with connect(ws_url(srv, srv.admin_token, "webrtc")) as ws:
            stun, turn = await recv_ice(ws)
        assert stun == {"urls": ["stun:127.0.0.1:3478"]}
        assert turn["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
        expiry, user = turn["username"].split(":", 1)
        assert user == "admin"
        assert int(expiry) > NOW  # now + 3600: checked exactly in the credential tests
        assert turn["credential"] == expected_credential(SECRET, turn["username"])
        status = await http_get(
            f"{srv.url}/api/status", {"Authorization": f"Bearer {srv.admin_token}"}
        )
        assert status.status == 200
        assert SECRET.encode() not in status.body
    assert SECRET not in caplog.text


async def test_signaling_sends_an_empty_list_without_ice_servers(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        async with connect(ws_url(srv, srv.admin_token, "webrtc")) as ws:
            assert await recv_ice(ws) == []


async def test_ws_transport_gets_no_ice_frame(tmp_path: Path) -> None:
    async with running_server(tmp_path, ice_servers=("stun:127.0.0.1:3478",)) as srv:
        async with ProtoClient.open(srv, srv.admin_token) as client:
            await client.hello()  # recv asserts a binary frame: no text came first


# -- end to end over a real STUN server on loopback ----------------------------------------


@pytest.mark.timeout(60)
async def test_headless_client_streams_through_a_stun_configured_server(
    tmp_path: Path, stun_server: Any
) -> None:
    async with running_server(tmp_path, ice_servers=(stun_server.url,)) as srv:
        options = ClientOptions(
            srv.url, srv.admin_token, transport="webrtc", moves=4, inbox=False, timeout=DEADLINE_S
        )
        client = HeadlessClient(options)
        report = await client.run()
    assert report["transport"] == "webrtc"
    assert report["mismatches"] == 0
    assert report["verified"] == report["frames"] >= 5
    # Both peers gathered through it: requests came from at least two sockets.
    assert stun_server.requests >= 2 and len(stun_server.sources) >= 2


# -- probes: which servers answer from here ------------------------------------------------


def _dead_udp_port() -> int:
    """A loopback UDP port nobody listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_probes_tell_answering_servers_from_silent_ones(stun_server: Any) -> None:
    dead = f"stun:127.0.0.1:{_dead_udp_port()}"
    alive, silent, tls = await probe_ice_servers(
        (stun_server.url, dead, "turns:127.0.0.1:5349"), timeout=1.0
    )
    assert alive.reachable is True and alive.rtt_ms is not None and alive.detail == "answered"
    assert silent.reachable is False and silent.rtt_ms is None
    assert tls.reachable is None  # TLS needs a TCP handshake: not probed, not held against it
    assert stun_server.requests >= 1
    health = IceHealth((alive, silent, tls))
    assert health.unreachable == {dead}
    servers = [{"urls": [stun_server.url, dead]}]
    (kept,) = rtc_ice_servers(servers, stun_only=True, skip=health.unreachable)
    assert kept.urls == [stun_server.url]  # our own peer never waits on the silent one
    assert rtc_ice_servers([{"urls": [dead]}], skip=health.unreachable) == []


async def test_the_admin_sees_the_probes_and_the_log_names_a_silent_server(
    tmp_path: Path, stun_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    dead = f"stun:127.0.0.1:{_dead_udp_port()}"
    async with running_server(tmp_path, ice_servers=(stun_server.url, dead)) as srv:
        bob = srv.add_user("bob", role="view")
        admin = await http_get(
            f"{srv.url}/api/status", {"Authorization": f"Bearer {srv.admin_token}"}
        )
        other = await http_get(f"{srv.url}/api/status", {"Authorization": f"Bearer {bob}"})
    probes = json.loads(admin.body)["ice"]["servers"]
    assert [(p["url"], p["reachable"]) for p in probes] == [(stun_server.url, True), (dead, False)]
    assert json.loads(other.body)["ice"] is None  # the network layout is the admin's business
    assert f"ICE server {dead} does not answer" in caplog.text
