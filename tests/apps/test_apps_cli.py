"""``simulacra apps``: listing, patching and unpatching through the one entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulacra.apps.emulation import load_or_compile_segments
from simulacra.apps.g2048 import G2048
from simulacra.cli import main


@pytest.fixture
def codec(monkeypatch: pytest.MonkeyPatch, fake_codec: Any) -> Any:
    monkeypatch.setattr("simulacra.apps.emulation._codec", lambda: fake_codec)
    return fake_codec


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json(tmp_path: Path, codec: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "apps", "--data", str(tmp_path), "--json")
    assert code == 0
    doc = json.loads(out)
    assert [a["name"] for a in doc["apps"]] == ["2048", "sand"]
    (g2048,) = [a for a in doc["apps"] if a["name"] == "2048"]
    assert (g2048["width"], g2048["height"]) == (480, 560)
    rows = {s["segment"]: s for s in g2048["segments"]}
    assert rows["row_move_left"]["in_bits"] == 16 and rows["row_move_left"]["out_bits"] == 16
    assert rows["row_move_left"]["packed_bytes"] == 131072
    assert rows["glyph"]["bytes"] is None and rows["glyph"]["verified"] is None
    assert codec.compiles == []


def test_list_text_after_compiling(
    tmp_path: Path, codec: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    load_or_compile_segments(G2048, tmp_path, progress=False)
    monkeypatch.setenv("SIMULACRA_DATA", str(tmp_path))  # --data from the environment
    code, out, _ = run(capsys, "apps")
    assert code == 0
    assert "row_move_left  16 -> 16 bits" in out
    assert "524,288 B  (table 131,072 B)  verified" in out
    assert "sand_rule" in out and "not compiled" in out


def test_patch_unpatch_and_list(
    tmp_path: Path, codec: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path)
    runner = load_or_compile_segments(G2048, tmp_path, progress=False)
    code, out, _ = run(
        capsys, "apps", "patch", "2048", "row_score", "0x11=7", "3=0x5", "--data", data
    )
    assert (code, out) == (0, "2048:row_score now answers from version 1 (2 patched)\n")
    assert runner.refresh() == ["row_score"]
    assert runner["row_score"](np.array([0x11, 3, 0x22], dtype=np.uint64)).tolist() == [7, 5, 8]
    code, out, _ = run(capsys, "apps", "patches", "2048", "row_score", "--data", data, "--json")
    assert json.loads(out)["versions"][0]["patches"] == [[3, 5], [0x11, 7]]
    code, out, _ = run(capsys, "apps", "patches", "2048", "row_score", "--data", data)
    assert out == "v1  0x3=0x5 0x11=0x7\n"
    code, out, _ = run(capsys, "apps", "unpatch", "2048", "row_score", "--data", data, "--json")
    assert json.loads(out) == {"app": "2048", "segment": "row_score", "version": 0}
    assert runner.refresh() == ["row_score"]
    assert runner["row_score"](np.array([0x11], dtype=np.uint64)).tolist() == [4]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["apps", "patch", "tetris", "x", "1=1"], "unknown app 'tetris'; known apps: 2048, sand"),
        (["apps", "patch", "2048", "nope", "1=1"], "no segment 'nope'; segments: row_move_left"),
        (["apps", "patch", "2048", "glyph", "1-1"], "patch must look like X=Y, got '1-1'"),
        (["apps", "patch", "2048", "glyph", "1=16"], "output 0x10 does not fit in 4 bits"),
        (["apps", "unpatch", "2048", "glyph"], "2048:glyph has no patches to revert"),
    ],
)
def test_errors_are_one_line(
    tmp_path: Path, codec: Any, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv, "--data", str(tmp_path))
    assert code == 1 and out == ""
    assert err.startswith("simulacra: ") and message in err and err.count("\n") == 1
