"""The ``simulacra`` dispatcher: errors are one line (or one JSON object), exit status 1."""

from __future__ import annotations

import argparse
import json

import pytest

from simulacra import cli
from simulacra.errors import CodeExpired


def _parser_raising(exc: BaseException) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simulacra")
    parser.add_argument("--json", action="store_true")

    def handler(args: argparse.Namespace) -> int:
        raise exc

    parser.set_defaults(handler=handler)
    return parser


@pytest.mark.parametrize(
    ("exc", "kind", "message"),
    [
        (CodeExpired("this code has expired"), "CodeExpired", "this code has expired"),
        (
            PermissionError(13, "Permission denied", "/root/x"),
            "OSError",
            "Permission denied: /root/x",
        ),
    ],
)
def test_errors_are_one_line_or_one_json_object(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exc: BaseException,
    kind: str,
    message: str,
) -> None:
    monkeypatch.setattr(cli, "build_parser", lambda: _parser_raising(exc))
    assert cli.main([]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"simulacra: {message}\n")
    assert cli.main(["--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == {"error": {"type": kind, "message": message}} and err == ""


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: simulacra" in capsys.readouterr().out
