"""``simulacra files ...`` against an in-process server (the CLI runs in a thread)."""

from __future__ import annotations

import asyncio
import json
import os

from server_testkit import running_server

from simulacra.cli import main


async def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_put_share_get_round_trip(tmp_path, capsys):
    src = tmp_path / "report.bin"
    data = os.urandom(300_000)
    src.write_bytes(data)
    async with running_server(tmp_path / "data") as srv:
        alice, bob = srv.add_user("alice"), srv.add_user("bob")
        a = ("--url", srv.url, f"--token={alice}")
        b = ("--url", srv.url, f"--token={bob}")

        code, out, _ = await _run(capsys, "files", "put", str(src), *a, "--json")
        assert code == 0
        entry = json.loads(out)["entry"]
        assert entry["name"] == "report.bin" and entry["size"] == len(data)

        code, out, _ = await _run(capsys, "files", "ls", *a)
        assert code == 0 and entry["id"] in out and "report.bin" in out

        code, out, _ = await _run(
            capsys,
            "files",
            "share",
            entry["id"],
            "--to",
            "bob",
            "--rights",
            "download",
            "--ttl",
            "12h",
            "--uses",
            "2",
            *a,
        )
        assert code == 0
        shared = out.strip()
        assert len(shared) == 26

        code, out, _ = await _run(capsys, "files", "inbox", *b)
        assert code == 0 and "report.bin" in out and "from alice" in out

        dest = tmp_path / "copy.bin"
        code, out, _ = await _run(capsys, "files", "get", shared, "-o", str(dest), *b, "--json")
        assert code == 0 and dest.read_bytes() == data
        assert json.loads(out)["size"] == len(data)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.bin", "data", "report.bin"]

        code, out, _ = await _run(capsys, "files", "codes", *a)
        assert code == 0 and out.startswith("#1  entry ") and "to bob  download  uses left 1" in out

        code, out, _ = await _run(capsys, "files", "revoke", shared, *a)
        assert code == 0 and out == "revoked code #1\n"


async def test_errors_are_one_line(tmp_path, capsys):
    async with running_server(tmp_path / "data") as srv:
        bob = srv.add_user("bob")
        b = ("--url", srv.url, f"--token={bob}")
        code, out, err = await _run(capsys, "files", "redeem", "A" * 26, *b)
        assert code == 1 and out == ""
        assert err == "simulacra: unknown regeneration code\n"
        code, out, err = await _run(capsys, "files", "redeem", "nope", *b, "--json")
        assert code == 1
        assert json.loads(out) == {
            "error": {
                "type": "CodeError",
                "message": "not a regeneration code (26 characters A-Z, 2-7)",
            }
        }
        dest = tmp_path / "never.bin"
        code, _, err = await _run(capsys, "files", "get", "B" * 26, "-o", str(dest), *b)
        assert code == 1 and not dest.exists()
        assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no partial file either
        code, _, err = await _run(capsys, "files", "ls", "--url", srv.url, "--token=wrong")
        assert code == 1 and "401" in err and err.count("\n") == 1
        code, _, err = await _run(capsys, "files", "put", str(tmp_path / "missing"), *b)
        assert code == 1 and "cannot read" in err
