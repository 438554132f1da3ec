"""ICE server lists (STUN/TURN) as the signaling socket carries them: checked the same everywhere.

::

    ServerConfig.ice_servers ─► ice_url_problem(url) ─► None, or why not (ConfigError there)
    server ─► text {"type":"ice","iceServers":[{"urls":[STUN…]},
                                               {"urls":[TURN…],"username":U,"credential":C}]}
    client ─► parse_ice_servers(obj["iceServers"]) ─► (IceServer, ...) | ProtocolError

A URL is ``stun:host[:port]``, ``stuns:…``, ``turn:host[:port][?transport=udp|tcp]``
or ``turns:…``. Hosts are names or IPv4 addresses: aiortc cannot parse an IPv6
literal, and the server's own peer uses the STUN entries of the same list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from simulacra.errors import ProtocolError

__all__ = [
    "ICE_SCHEMES",
    "MAX_ICE_SERVERS",
    "MAX_ICE_URLS",
    "MAX_ICE_URL_CHARS",
    "MAX_ICE_CREDENTIAL_CHARS",
    "IceServer",
    "ice_url_problem",
    "ice_url_address",
    "is_turn_url",
    "parse_ice_servers",
]

ICE_SCHEMES = ("stun", "stuns", "turn", "turns")
MAX_ICE_SERVERS = 16  # entries of one list (and URLs in a server's config)
MAX_ICE_URLS = 16  # URLs of one entry
MAX_ICE_URL_CHARS = 256
MAX_ICE_CREDENTIAL_CHARS = 512  # username or credential; REST-API ones are ~40 characters

_ICE_URL = re.compile(
    r"(?P<scheme>[a-z]+):(?P<host>[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)
_ENTRY_KEYS = frozenset({"urls", "username", "credential"})


def ice_url_problem(url: object) -> str | None:
    """Why ``url`` is not a STUN/TURN URL we accept, or None when it is."""
    if not isinstance(url, str):
        return f"ICE server URL must be a string, got {type(url).__name__}"
    if len(url) > MAX_ICE_URL_CHARS:
        return f"ICE server URL longer than {MAX_ICE_URL_CHARS} characters"
    shown = repr(url[:64])
    if not url or any(c.isspace() for c in url):
        return f"ICE server URL {shown} is empty or contains whitespace"
    match = _ICE_URL.fullmatch(url)
    scheme = url.split(":", 1)[0]
    if scheme not in ICE_SCHEMES:
        return f"ICE server URL {shown} must start with stun:, stuns:, turn: or turns:"
    if match is None:
        return f"ICE server URL {shown} is not scheme:host[:port][?transport=udp|tcp]"
    port = match["port"]
    if port is not None and not 1 <= int(port) <= 65535:
        return f"ICE server URL {shown} has a port outside 1..65535"
    if match["transport"] is not None and not scheme.startswith("turn"):
        return f"ICE server URL {shown}: only turn: and turns: take a transport"
    if scheme == "turns" and match["transport"] == "udp":
        return f"ICE server URL {shown}: turns: runs over TLS (tcp), not udp"
    return None


DEFAULT_PORTS = {"stun": 3478, "turn": 3478, "stuns": 5349, "turns": 5349}


def ice_url_address(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, transport) of a URL ``ice_url_problem`` accepts.

    The port defaults per scheme (3478, TLS ones 5349); the transport is ``udp``
    unless the URL says otherwise or the scheme runs over TLS (``tcp``).
    """
    problem = ice_url_problem(url)
    match = _ICE_URL.fullmatch(url)
    if problem is not None or match is None:
        raise ProtocolError(problem or f"not an ICE server URL: {url[:64]!r}")
    scheme = match["scheme"]
    port = int(match["port"]) if match["port"] else DEFAULT_PORTS[scheme]
    transport = match["transport"] or ("tcp" if scheme.endswith("s") else "udp")
    return scheme, match["host"], port, transport


def is_turn_url(url: str) -> bool:
    """Whether ``url`` names a TURN server (which needs credentials)."""
    return url.startswith(("turn:", "turns:"))


@dataclass(frozen=True, slots=True)
class IceServer:
    """One entry of an ``iceServers`` list; username and credential come together or not at all."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.urls) <= MAX_ICE_URLS:
            raise ProtocolError(f"an ICE server needs 1..{MAX_ICE_URLS} URLs")
        for url in self.urls:
            problem = ice_url_problem(url)
            if problem is not None:
                raise ProtocolError(problem)
        if (self.username is None) != (self.credential is None):
            raise ProtocolError("an ICE server has a username and a credential, or neither")
        for name, value in (("username", self.username), ("credential", self.credential)):
            if value is not None and (
                not isinstance(value, str) or len(value) > MAX_ICE_CREDENTIAL_CHARS
            ):
                raise ProtocolError(
                    f"ICE server {name} must be a string of at most"
                    f" {MAX_ICE_CREDENTIAL_CHARS} characters"
                )

    def to_json(self) -> dict[str, Any]:
        """The entry as RTCPeerConnection's ``iceServers`` takes it (and the wire carries it)."""
        entry: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            entry["username"] = self.username
            entry["credential"] = self.credential
        return entry


def parse_ice_servers(value: object) -> tuple[IceServer, ...]:
    """The ``iceServers`` of an ``ice`` signaling message; ``ProtocolError`` on any other shape."""
    if not isinstance(value, list):
        raise ProtocolError("iceServers must be a list")
    if len(value) > MAX_ICE_SERVERS:
        raise ProtocolError(f"iceServers has more than {MAX_ICE_SERVERS} entries")
    servers = []
    for entry in value:
        if not isinstance(entry, dict):
            raise ProtocolError("each iceServers entry must be an object")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise ProtocolError(f"unexpected iceServers key {sorted(unknown)[0][:64]!r}")
        urls = entry.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list):
            raise ProtocolError("iceServers urls must be a string or a list of strings")
        if len(urls) > MAX_ICE_URLS:
            raise ProtocolError(f"an ICE server has more than {MAX_ICE_URLS} URLs")
        if any(key in entry and entry[key] is None for key in ("username", "credential")):
            raise ProtocolError("ICE server username and credential must be strings, not null")
        servers.append(IceServer(tuple(urls), entry.get("username"), entry.get("credential")))
    return tuple(servers)
