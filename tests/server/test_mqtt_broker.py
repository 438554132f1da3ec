"""The embedded broker: loopback only, on a port it found free, gone when closed."""

from __future__ import annotations

import socket

import aiomqtt
import pytest

from simulacra.errors import ConfigError, TransportError
from simulacra.server.broker import EmbeddedBroker, free_port, is_loopback


def test_loopback_hosts() -> None:
    assert [is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "localhost")] == [True] * 4
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com", "")] == [False] * 5


def test_anonymous_broker_refuses_to_leave_loopback() -> None:
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(ConfigError):
            EmbeddedBroker(host)
    with pytest.raises(ConfigError):
        EmbeddedBroker(port=70000)


@pytest.mark.mqtt
async def test_serves_on_a_free_port_until_closed() -> None:
    async with EmbeddedBroker() as broker:
        assert broker.running
        assert broker.port not in (0, 1883)
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        async with aiomqtt.Client("127.0.0.1", broker.port, timeout=10) as client:
            await client.subscribe("t", qos=1)
            await client.publish("t", b"hi", qos=1)
            async for message in client.messages:
                assert message.payload == b"hi"
                break
    assert not broker.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()


@pytest.mark.mqtt
async def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TransportError, match="embedded MQTT broker"):
            await EmbeddedBroker(port=port).start()


async def test_a_broker_that_never_stops_does_not_hang_close(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from simulacra.server import broker as broker_module

    class StuckBroker:
        async def shutdown(self) -> None:
            await asyncio.Event().wait()  # amqtt's broadcast loop, stuck

    monkeypatch.setattr(broker_module, "_SHUTDOWN_S", 0.05)
    embedded = EmbeddedBroker()
    embedded._broker = StuckBroker()
    async with asyncio.timeout(5):
        await embedded.close()
    assert "did not stop" in caplog.text
