"""``simulacra users`` in-process and ``simulacra serve`` as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from server_testkit import DEADLINE_S, http_get

from simulacra.cli import build_parser, main
from simulacra.server.cli import _compile_note, _ice_servers
from simulacra.server.config import ServerConfig
from simulacra.server.store import Store


def test_users_add_prints_token_last(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["users", "add", "bob", "--role", "view", "--data", str(tmp_path)]) == 0
    token = capsys.readouterr().out.splitlines()[-1]
    with Store(tmp_path) as store:
        user = store.authenticate(token)
    assert user is not None and (user.name, user.role) == ("bob", "view")


def test_users_env_data_dir_and_ls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMULACRA_DATA", str(tmp_path / "env-data"))
    assert main(["users", "add", "ann"]) == 0
    capsys.readouterr()
    assert main(["users", "ls"]) == 0
    assert capsys.readouterr().out == "ann\tcontrol\n"
    assert main(["users", "ls", "--json"]) == 0
    assert [u["name"] for u in json.loads(capsys.readouterr().out)] == ["ann"]
    assert main(["users", "add", "ann"]) == 1
    assert capsys.readouterr().err == "simulacra: user 'ann' already exists\n"


async def test_serve_prints_url_and_stops_on_ctrl_c(data_dir: Path) -> None:
    tmp_path = data_dir  # emulators already compiled: this start loads them at once
    env = dict(os.environ, SIMULACRA_PORT="0", SIMULACRA_DATA=str(tmp_path), SIMULACRA_APP="2048")
    env["SIMULACRA_HOST"] = "127.0.0.1"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulacra.cli",
        "serve",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(DEADLINE_S * 3):
            assert proc.stdout is not None
            line = (await proc.stdout.readline()).decode()
        prefix = "simulacra serving 2048 at http://127.0.0.1:"
        assert line.startswith(prefix), line
        url, _, token = (
            line.strip().removeprefix("simulacra serving 2048 at ").partition("/?token=")
        )
        assert token == (tmp_path / "admin.token").read_text().strip()
        assert int(url.rsplit(":", 1)[1]) > 0
        health = await http_get(url + "/healthz")
        assert (health.status, health.body) == (200, b"ok\n")
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(DEADLINE_S):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_compile_note_only_on_first_start(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    fresh = tmp_path_factory.mktemp("fresh")
    note = _compile_note(ServerConfig(data_dir=fresh, app="2048"))
    assert note == (
        f"simulacra: compiling 3 segment(s) of 2048 into emulators"
        f" (first start; cached in {fresh / 'emulators' / '2048'})"
    )
    assert _compile_note(ServerConfig(data_dir=data_dir, app="2048")) is None
    assert _compile_note(ServerConfig(data_dir=fresh, app="2048", reference=True)) is None


def test_reference_flag_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_parser().parse_args(["serve"]).reference is False
    assert build_parser().parse_args(["serve", "--reference"]).reference is True
    monkeypatch.setenv("SIMULACRA_REFERENCE", "1")
    assert build_parser().parse_args(["serve"]).reference is True


def test_ice_flags_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIMULACRA_ICE_SERVERS", raising=False)
    monkeypatch.delenv("SIMULACRA_TURN_SECRET", raising=False)
    monkeypatch.delenv("SIMULACRA_TURN_TTL", raising=False)
    args = build_parser().parse_args(["serve"])
    assert (_ice_servers(args.ice_servers), args.turn_secret, args.turn_ttl) == ((), "", 3600.0)
    args = build_parser().parse_args(
        ["serve", "--ice-server", "stun:a:1", "--ice-server", "turn:b:2?transport=tcp"]
        + ["--turn-secret", "s", "--turn-ttl", "60"]
    )
    assert _ice_servers(args.ice_servers) == ("stun:a:1", "turn:b:2?transport=tcp")
    assert (args.turn_secret, args.turn_ttl) == ("s", 60.0)
    monkeypatch.setenv("SIMULACRA_ICE_SERVERS", " stun:a:1 ,turn:b:2,")
    monkeypatch.setenv("SIMULACRA_TURN_SECRET", "from-env")
    monkeypatch.setenv("SIMULACRA_TURN_TTL", "120")
    args = build_parser().parse_args(["serve"])
    assert _ice_servers(args.ice_servers) == ("stun:a:1", "turn:b:2")
    assert (args.turn_secret, args.turn_ttl) == ("from-env", 120.0)
    # a flag replaces the variable's whole list
    args = build_parser().parse_args(["serve", "--ice-server", "stun:c:3"])
    assert _ice_servers(args.ice_servers) == ("stun:c:3",)


def test_bad_ice_settings_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SIMULACRA_TURN_SECRET", raising=False)
    monkeypatch.setenv("SIMULACRA_ICE_SERVERS", "stun:a:1,http://x")
    assert main(["serve"]) == 1
    assert capsys.readouterr().err == (
        "simulacra: ICE server URL 'http://x' must start with stun:, stuns:, turn: or turns:"
        " (from SIMULACRA_ICE_SERVERS)\n"
    )
    monkeypatch.delenv("SIMULACRA_ICE_SERVERS")
    assert main(["serve", "--ice-server", "turn:h:3478"]) == 1
    assert "needs turn_secret" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--ice-server", "stun:h h"])
    assert "whitespace" in capsys.readouterr().err
    monkeypatch.setenv("SIMULACRA_TURN_TTL", "0")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve"])
    assert "(from SIMULACRA_TURN_TTL)" in capsys.readouterr().err
