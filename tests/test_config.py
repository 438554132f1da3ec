"""config.add_option: flags win over SIMULACRA_* variables, which win over defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from simulacra.config import add_option, env_name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    add_option(parser, "--port", default=8080, type=int, help="port")
    add_option(parser, "--data-dir", default="data", type=Path, help="dir")
    add_option(parser, "--transport", default="webrtc", choices=("webrtc", "ws"), help="carrier")
    return parser


def test_env_name() -> None:
    assert env_name("--data-dir") == "SIMULACRA_DATA_DIR"


def test_flag_beats_environment_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORT", "DATA_DIR", "TRANSPORT"):
        monkeypatch.delenv(f"SIMULACRA_{name}", raising=False)
    assert vars(_parser().parse_args([])) == {
        "port": 8080,
        "data_dir": Path("data"),
        "transport": "webrtc",
    }
    monkeypatch.setenv("SIMULACRA_PORT", "9000")
    monkeypatch.setenv("SIMULACRA_DATA_DIR", "/srv/sim")
    monkeypatch.setenv("SIMULACRA_TRANSPORT", "ws")
    assert vars(_parser().parse_args([])) == {
        "port": 9000,
        "data_dir": Path("/srv/sim"),
        "transport": "ws",
    }
    assert _parser().parse_args(["--port", "1"]).port == 1


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "eighty", "argument --port: invalid value 'eighty' (from SIMULACRA_PORT)"),
        ("TRANSPORT", "carrier-pigeon", "'carrier-pigeon' (from SIMULACRA_TRANSPORT) is not one"),
    ],
)
def test_a_bad_environment_value_is_one_usage_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(f"SIMULACRA_{name}", value)
    parser = _parser()  # building the parser never fails on the environment
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    # A good flag given on the command line makes the bad variable irrelevant.
    flag = {"PORT": ["--port", "1"], "TRANSPORT": ["--transport", "ws"]}[name]
    parser.parse_args(flag)
