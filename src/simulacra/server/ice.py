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

This is the TURN REST API scheme coturn checks with ``use-auth-secret`` and
``static-auth-secret``: coturn recomputes the HMAC and refuses past the expiry,
so no TURN password is stored and a leaked one dies with its TTL. The secret is
never logged: it stays out of every repr and out of ``/api/status``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCIceServer

from simulacra.protocol.ice import IceServer, is_turn_url
from simulacra.server.config import ServerConfig

__all__ = ["IceSettings", "turn_credentials", "ice_servers_for", "rtc_ice_servers"]


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
    servers: list[dict[str, Any]], *, stun_only: bool = False
) -> list[RTCIceServer]:
    """aiortc's form of a JSON-ready ``iceServers`` list.

    ``stun_only``: the server's own peer learns its public address but allocates no
    relay: one relay (the client's) already crosses any NAT pair, and a TURN
    allocation per connection on the server would only load coturn and slow answers.
    """
    if stun_only:
        servers = [e for e in servers if not any(is_turn_url(u) for u in e["urls"])]
    return [
        RTCIceServer(
            urls=list(entry["urls"]),
            username=entry.get("username"),
            credential=entry.get("credential"),
        )
        for entry in servers
    ]
