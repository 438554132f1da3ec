"""docker/compose.yaml and the Mosquitto files it mounts: consistent, and accepted by the tools.

``docker compose config`` runs where the compose plugin exists (it needs no engine);
the structure checks run everywhere.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulacra.protocol.ice import ice_url_problem

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV = {
    "SIMULACRA_MQTT_PASSWORD": "test-mqtt-password",
    "SIMULACRA_TURN_SECRET": "test-turn-secret",
    "SIMULACRA_TURN_HOST": "192.0.2.10",
}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source, for the short ``source:target[:mode]`` syntax."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        out[target] = source
    return out


def test_the_stack_has_its_three_parts_and_builds_from_our_dockerfile() -> None:
    services = _compose()["services"]
    assert {"simulacra", "mosquitto", "coturn"} <= set(services)
    build = services["simulacra"]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).is_file()


def test_simulacra_keeps_its_data_on_a_volume_and_is_configured_by_environment() -> None:
    data = _compose()
    app = data["services"]["simulacra"]
    env = app["environment"]
    assert env["SIMULACRA_DATA"] == "/data"
    assert _mounts(app)["/data"] in data["volumes"]  # a named volume, not a host path
    assert re.fullmatch(
        r"mqtt://simulacra:\$\{SIMULACRA_MQTT_PASSWORD:\?[^}]*\}@mosquitto:1883",
        env["SIMULACRA_MQTT"],
    )
    assert env["SIMULACRA_NODE"]
    # Published on loopback unless the operator says otherwise.
    assert app["ports"] == ["${SIMULACRA_BIND:-127.0.0.1}:${SIMULACRA_PUBLISH_PORT:-8080}:8080"]


def test_simulacra_mints_turn_credentials_from_coturns_secret() -> None:
    services = _compose()["services"]
    env = services["simulacra"]["environment"]
    command = services["coturn"]["command"]
    assert "--use-auth-secret" in command
    assert not any(arg.startswith(("--user=", "--lt-cred-mech", "-n")) for arg in command)
    # The secret reaches coturn by a 0600 file written at start, never its command line,
    # and it is the same variable simulacra mints credentials from.
    assert not any("static-auth-secret" in arg for arg in command)
    coturn = services["coturn"]
    shell, script = coturn["entrypoint"][:2], coturn["entrypoint"][2]
    assert shell == ["/bin/sh", "-c"] and "umask 077" in script
    assert "static-auth-secret=%s" in script and '"$$TURN_SECRET"' in script
    assert 'exec turnserver -c /tmp/turnserver.conf "$$@"' in script
    secret = re.fullmatch(r"\$\{(\w+):\?[^}]*\}", coturn["environment"]["TURN_SECRET"])
    assert secret is not None
    assert re.fullmatch(rf"\$\{{{secret[1]}:\?[^}}]*\}}", env["SIMULACRA_TURN_SECRET"])
    # Every URL parses as the server's config does, and points at coturn's published port.
    urls = env["SIMULACRA_ICE_SERVERS"].split(",")
    host = r"\$\{SIMULACRA_TURN_HOST(:\?[^}]*)?\}"
    assert [re.sub(host, "turn.example", url) for url in urls] == [
        "stun:turn.example:3478",
        "turn:turn.example:3478",
    ]
    for url in urls:
        assert ice_url_problem(re.sub(host, "turn.example", url)) is None
    assert "3478:3478/udp" in services["coturn"]["ports"]


def test_the_relay_reaches_simulacra_and_no_other_private_address() -> None:
    compose = _compose()
    command = compose["services"]["coturn"]["command"]
    (subnet,) = [c["subnet"] for c in compose["networks"]["default"]["ipam"]["config"]]
    network = ipaddress.ip_network(subnet)
    simulacra = compose["services"]["simulacra"]["networks"]["default"]["ipv4_address"]
    (allowed,) = [a.split("=", 1)[1] for a in command if a.startswith("--allowed-peer-ip=")]
    # Exactly simulacra's fixed address: not the subnet, whose gateway is the Docker host.
    assert allowed == simulacra and ipaddress.ip_address(allowed) in network
    assert ipaddress.ip_address(allowed) not in (network[0], network[1], network[-1])
    denied = [a.split("=", 1)[1] for a in command if a.startswith("--denied-peer-ip=")]
    assert "172.16.0.0-172.31.255.255" in denied and "10.0.0.0-10.255.255.255" in denied
    assert "--no-tcp-relay" in command  # nothing relays TCP to Mosquitto on that network


def test_mosquitto_mounts_the_files_its_config_names_and_stays_internal() -> None:
    data = _compose()
    broker = data["services"]["mosquitto"]
    assert "ports" not in broker  # only the compose network reaches MQTT
    mounts = _mounts(broker)
    for target, source in mounts.items():
        if source.startswith("."):
            assert (DOCKER / source).is_file(), f"{source} is missing"
        else:
            assert source in data["volumes"], target
    conf = (DOCKER / "mosquitto" / "mosquitto.conf").read_text()
    settings = dict(
        line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#")
    )
    assert settings["allow_anonymous"] == "false"
    assert mounts["/mosquitto/config/acl"] == "./mosquitto/acl"
    assert settings["acl_file"] == "/mosquitto/config/acl"
    assert Path(settings["password_file"]).parent.as_posix() in mounts
    assert settings["persistence_location"].rstrip("/") in mounts
    init = data["services"]["mosquitto-init"]
    assert Path(settings["password_file"]).parent.as_posix() in _mounts(init)


def test_the_acl_lets_users_read_only_their_own_inbox() -> None:
    lines = [
        line.split()
        for line in (DOCKER / "mosquitto" / "acl").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == [
        ["pattern", "read", "simulacra/v1/nodes/+"],
        ["pattern", "read", "simulacra/v1/users/%u/inbox"],
        ["user", "simulacra"],
        ["topic", "readwrite", "simulacra/v1/#"],
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.mqtt
def test_mosquitto_accepts_the_config(tmp_path: Path) -> None:
    mosquitto = shutil.which(
        "mosquitto", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"
    )
    passwd_tool = shutil.which("mosquitto_passwd")
    if mosquitto is None or passwd_tool is None:
        pytest.skip("mosquitto and mosquitto_passwd are not installed")
    (tmp_path / "data").mkdir()
    passwd = tmp_path / "passwd"
    passwd.touch(mode=0o600)
    subprocess.run([passwd_tool, "-b", str(passwd), "simulacra", "pw"], check=True)
    port = _free_port()
    conf = (DOCKER / "mosquitto" / "mosquitto.conf").read_text()
    # The same file, pointed at a temporary directory and a free loopback port.
    conf = (
        conf.replace("listener 1883\n", f"listener {port} 127.0.0.1\n")
        .replace("/mosquitto/auth/passwd", str(passwd))
        .replace("/mosquitto/config/acl", str(DOCKER / "mosquitto" / "acl"))
        .replace("/mosquitto/data/", f"{tmp_path / 'data'}/")
        .replace("log_dest stdout", "log_dest stderr")
    )
    conf += f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
    path = tmp_path / "mosquitto.conf"
    path.write_text(conf)
    proc = subprocess.Popen([mosquitto, "-c", str(path)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)  # polling a port with a deadline
        assert proc.poll() is None, proc.communicate()[1].decode(errors="replace")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _compose_command() -> list[str] | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        probe = subprocess.run([*cmd, "version"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return cmd
    return None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    cmd = _compose_command()
    if cmd is None:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed")
    result = subprocess.run(
        [*cmd, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **ENV},
    )
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(
        [*cmd, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k not in ENV},
    )
    assert missing.returncode != 0
    assert "SIMULACRA_MQTT_PASSWORD" in missing.stderr
