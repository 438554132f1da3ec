"""ICE servers for each WebRTC connection, TURN ones with ephemeral REST-API credentials.

::

    IceSettings(urls, turn_secret, turn_ttl)        (from ServerConfig, once per server)
        │ ice_servers_for(settings, user, now)      (once per signaling socket)
        ▼
    [{"urls": [stun…]},                                              no credentials
     {"urls": [turn…], "username": "<expiry>:<user>",                expiry = now + ttl
                       "credential": base64(HMAC-SHA1(secret, username))}]
        ├─► text {"type":"ice","iceServers":[…]} to the client
        └─► rtc_ice_servers(…, stun_only=True) ─► the server's own RTCPeerConnection

    probe_ice_servers(urls) ─► IceProbe per URL: a STUN Binding request over UDP, RTT or
        no answer (at start and every PROBE_INTERVAL_S) ─► IceHealth: logged, shown to the
        admin in /api/status, and our own peer skips servers it cannot reach (one
        unreachable server would stall every answer by aiortc's 5 s gathering timeout)

This is the TURN REST API scheme coturn checks with ``use-auth-secret`` and
``static-auth-secret``: coturn recomputes the HMAC and refuses past the expiry,
so no TURN password is stored and a leaked one dies with its TTL. The secret is
never logged: it stays out of every repr and out of ``/api/status``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from aioice import stun
from aiortc import RTCIceServer

from simulacra.errors import ProtocolError
from simulacra.protocol.ice import IceServer, ice_url_address, is_turn_url
from simulacra.server.config import ServerConfig

__all__ = [
    "IceSettings",
    "IceProbe",
    "IceHealth",
    "PROBE_TIMEOUT_S",
    "PROBE_INTERVAL_S",
    "turn_credentials",
    "ice_servers_for",
    "rtc_ice_servers",
    "probe_ice_server",
    "probe_ice_servers",
]

log = logging.getLogger("simulacra.server.ice")

PROBE_TIMEOUT_S = 2.0  # per server: a STUN answer across the internet takes well under this
PROBE_INTERVAL_S = 300.0  # servers that come back are used again within this


@dataclass(frozen=True, slots=True)
class IceSettings:
    """The ICE part of a server's config; the URLs were checked by ``ServerConfig``."""

    urls: tuple[str, ...] = ()
    turn_secret: str = field(default="", repr=False)
    turn_ttl: float = 3600.0

    @classmethod
    def from_config(cls, config: ServerConfig) -> IceSettings:
        return cls(config.ice_servers, config.turn_secret, config.turn_ttl)


def turn_credentials(secret: str, user: str, expiry: int) -> tuple[str, str]:
    """(username, credential) valid until ``expiry`` (Unix seconds) for a coturn with ``secret``."""
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers_for(settings: IceSettings, user: str, now: float) -> list[dict[str, Any]]:
    """The JSON-ready ``iceServers`` for one connection of ``user`` at Unix time ``now``."""
    stun = tuple(url for url in settings.urls if not is_turn_url(url))
    turn = tuple(url for url in settings.urls if is_turn_url(url))
    servers = []
    if stun:
        servers.append(IceServer(stun))
    if turn:
        username, credential = turn_credentials(
            settings.turn_secret, user, int(now + settings.turn_ttl)
        )
        servers.append(IceServer(turn, username, credential))
    return [server.to_json() for server in servers]


def rtc_ice_servers(
    servers: list[dict[str, Any]], *, stun_only: bool = False, skip: frozenset[str] = frozenset()
) -> list[RTCIceServer]:
    """aiortc's form of a JSON-ready ``iceServers`` list.

    ``stun_only``: the server's own peer learns its public address but allocates no
    relay: one relay (the client's) already crosses any NAT pair, and a TURN
    allocation per connection on the server would only load coturn and slow answers.
    ``skip``: URLs our probes found unreachable from here.
    """
    if stun_only:
        servers = [e for e in servers if not any(is_turn_url(u) for u in e["urls"])]
    if skip:
        kept = [{**e, "urls": [u for u in e["urls"] if u not in skip]} for e in servers]
        servers = [e for e in kept if e["urls"]]
    return [
        RTCIceServer(
            urls=list(entry["urls"]),
            username=entry.get("username"),
            credential=entry.get("credential"),
        )
        for entry in servers
    ]


@dataclass(frozen=True, slots=True)
class IceProbe:
    """What one probe of one ICE server found."""

    url: str
    reachable: bool | None  # None: not probed (TLS or TCP: a Binding request needs UDP here)
    rtt_ms: float | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _BindingClient(asyncio.DatagramProtocol):
    """Sends one Binding request (again on ``resend``) and waits for its success answer."""

    def __init__(self, request: stun.Message) -> None:
        self.request = request
        self.answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.resend()

    def resend(self) -> None:
        if self.transport is not None:
            self.transport.sendto(bytes(self.request))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            answer = stun.parse_message(data)
        except ValueError:
            return  # not STUN: whatever it is, it is not our answer
        if (
            answer.transaction_id == self.request.transaction_id
            and answer.message_class == stun.Class.RESPONSE
            and not self.answered.done()
        ):
            self.answered.set_result(None)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable and the like
        if not self.answered.done():
            self.answered.set_exception(exc)


async def probe_ice_server(url: str, *, timeout: float = PROBE_TIMEOUT_S) -> IceProbe:
    """Ask ``url`` for our address once (resent halfway through ``timeout``)."""
    try:
        _, host, port, transport = ice_url_address(url)
    except ProtocolError as exc:
        return IceProbe(url, False, None, str(exc))
    if transport != "udp":
        return IceProbe(url, None, None, "not probed: TLS/TCP")
    loop = asyncio.get_running_loop()
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.add_fingerprint()
    started = time.perf_counter()
    endpoint: asyncio.DatagramTransport | None = None
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(
                host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
            address = str(infos[0][4][0])  # IPv4 only, as ice_url_problem allows
            endpoint, client = await loop.create_datagram_endpoint(
                lambda: _BindingClient(request), remote_addr=(address, port)
            )
            resend = loop.call_later(timeout / 2, client.resend)
            try:
                await client.answered
            finally:
                resend.cancel()
    except TimeoutError:
        return IceProbe(url, False, None, f"no answer within {timeout:g} s")
    except OSError as exc:
        return IceProbe(url, False, None, f"{type(exc).__name__}: {exc}"[:200])
    finally:
        if endpoint is not None:
            endpoint.close()
    return IceProbe(url, True, round((time.perf_counter() - started) * 1000, 1), "answered")


async def probe_ice_servers(
    urls: tuple[str, ...], *, timeout: float = PROBE_TIMEOUT_S
) -> tuple[IceProbe, ...]:
    """Every URL probed at once: the whole takes ``timeout`` at most."""
    return tuple(await asyncio.gather(*(probe_ice_server(u, timeout=timeout) for u in urls)))


@dataclass
class IceHealth:
    """The latest probes of this server's ICE servers (its links read ``unreachable``)."""

    probes: tuple[IceProbe, ...] = ()
    probed_at: float | None = None  # Unix time

    @property
    def unreachable(self) -> frozenset[str]:
        return frozenset(p.url for p in self.probes if p.reachable is False)

    async def refresh(self, urls: tuple[str, ...], *, timeout: float = PROBE_TIMEOUT_S) -> None:
        before = self.unreachable
        self.probes = await probe_ice_servers(urls, timeout=timeout)
        self.probed_at = time.time()
        for probe in self.probes:
            if probe.reachable is False and probe.url not in before:
                log.warning(
                    "ICE server %s does not answer from here (%s): our peer skips it, and"
                    " clients that cannot reach it either wait up to 5 s per connect",
                    probe.url,
                    probe.detail,
                )
            elif probe.reachable and probe.url in before:
                log.info("ICE server %s answers again (%s ms)", probe.url, probe.rtt_ms)

    def to_json(self) -> dict[str, Any]:
        return {"probed_at": self.probed_at, "servers": [p.to_json() for p in self.probes]}
