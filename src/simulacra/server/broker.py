"""The embedded MQTT broker: amqtt, in-process, loopback only.

``simulacra serve`` without ``--mqtt`` runs one so a single machine needs
nothing else; production points ``--mqtt`` at Mosquitto 2 instead::

    EmbeddedBroker(host="127.0.0.1", port=0)
        port 0 ─► probe a free loopback port (1883 is often a system broker's)
              ─► amqtt Broker, one TCP listener, anonymous clients allowed
              ─► url "mqtt://127.0.0.1:PORT"  ─► MqttBus of this node and of
                                                 other nodes on this machine

Anonymous access is only safe because the listener never leaves loopback, so a
non-loopback host is a ``ConfigError``. Retained messages and sessions live in
memory: they end with the process, like the broker.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any

from simulacra.errors import ConfigError, TransportError

__all__ = ["EmbeddedBroker", "free_port", "is_loopback"]

log = logging.getLogger("simulacra.broker")

# A probed port can be taken between the probe and the bind; try a few.
_BIND_ATTEMPTS = 5
_SHUTDOWN_S = 5.0  # how long the broker may take to stop before the server goes on without it


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _broker_config(host: str, port: int) -> dict[str, Any]:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "listeners": {"default": {"type": "tcp", "bind": bind, "max_connections": 1024}},
        # Nodes keep persistent sessions; forget those of nodes gone for an hour.
        "session_expiry_interval": 3600,
        # No $SYS publisher and no packet logger: quiet, and nothing to leak.
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


class EmbeddedBroker:
    """``async with EmbeddedBroker() as broker: broker.url``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback(host):
            raise ConfigError(
                f"the embedded MQTT broker only listens on loopback, not {host!r}; "
                "use --mqtt mqtt://HOST:PORT for a shared broker"
            )
        if not 0 <= port <= 65535:
            raise ConfigError(f"MQTT port must be 0..65535, got {port}")
        self.host = "127.0.0.1" if host == "localhost" else host
        self._requested_port = port
        self.port = 0
        self._broker: Any = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def start(self) -> None:
        # Imported here: amqtt pulls in its plugin machinery, which only the embedded case needs.
        from amqtt.broker import Broker
        from amqtt.errors import BrokerError

        # amqtt and its state machine library log every packet and transition at INFO;
        # quiet them unless the application configured them itself.
        for name in ("amqtt", "transitions"):
            logger = logging.getLogger(name)
            if logger.level == logging.NOTSET:
                logger.setLevel(logging.WARNING)
        attempts = 1 if self._requested_port else _BIND_ATTEMPTS
        last: Exception | None = None
        for _ in range(attempts):
            port = self._requested_port or free_port(self.host)
            broker = Broker(_broker_config(self.host, port))
            try:
                await broker.start()
            except BrokerError as exc:
                last = exc
                continue
            self._broker = broker
            self.port = port
            log.info("embedded MQTT broker listening on %s", self.url)
            return
        raise TransportError(f"cannot start the embedded MQTT broker on {self.host}: {last}")

    async def close(self) -> None:
        broker, self._broker = self._broker, None
        if broker is None:
            return
        try:
            # amqtt's shutdown can wait forever on its broadcast loop; give it a few seconds.
            await asyncio.wait_for(broker.shutdown(), _SHUTDOWN_S)
        except TimeoutError:
            log.warning("embedded MQTT broker did not stop within %.0f s", _SHUTDOWN_S)
        except Exception:  # a broker that fails to stop must not block the server's own shutdown
            log.exception("embedded MQTT broker did not shut down cleanly")

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
