import importlib
import json
import subprocess
import sys
import textwrap

import pytest

from simulacra.cli import main
from simulacra.codecs.emulator.cli import load_function, parse_int, parse_pair
from simulacra.errors import ConfigError, NotFound


def _codec_ready() -> bool:
    try:
        mod = importlib.import_module("simulacra.codecs.emulator")
    except ImportError:
        return False
    return hasattr(mod, "compile_emulator") and hasattr(mod, "load_emulator")


needs_codec = pytest.mark.skipif(not _codec_ready(), reason="emulator codec not built yet")

SOURCE = textwrap.dedent(
    """
    def tiny(x):
        return (x * 5 + 3) & 0xF ^ (x >> 3)
    """
)


def tiny(x: int) -> int:
    return (x * 5 + 3) & 0xF ^ (x >> 3)


# --- parsing (no codec needed) ---------------------------------------------------


def test_parse_int_accepts_decimal_and_hex():
    assert [parse_int(s) for s in ("42", "0x2a", "0X2A", "0b101", "1_000")] == [42, 42, 42, 5, 1000]


@pytest.mark.parametrize("text", ["", "x1", "-3", "1.5", "0xg"])
def test_parse_int_rejects(text):
    with pytest.raises(ConfigError):
        parse_int(text)


def test_parse_pair():
    assert parse_pair("0x10=7") == (16, 7)
    with pytest.raises(ConfigError):
        parse_pair("16")


def test_load_function_from_module_and_file(tmp_path):
    fn = load_function("simulacra.codecs.emulator.examples:popcount16_py")
    assert fn(0xFF) == 8
    path = tmp_path / "segment.py"
    path.write_text(SOURCE)
    assert load_function(f"{path}:tiny")(9) == tiny(9)
    with pytest.raises(NotFound):
        load_function(f"{path}:missing")
    with pytest.raises(NotFound):
        load_function("simulacra.no_such_module:f")
    with pytest.raises(ConfigError):
        load_function("no_colon")


def test_load_function_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "cwd_segment_mod.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    assert load_function("cwd_segment_mod:tiny")(9) == tiny(9)
    sys.modules.pop("cwd_segment_mod", None)


def test_bad_widths_are_one_line_errors(tmp_path, capsys):
    path = tmp_path / "segment.py"
    path.write_text(SOURCE)
    rc = main(
        [
            "emu",
            "compile",
            f"{path}:tiny",
            "--in-bits",
            "40",
            "--out-bits",
            "4",
            "-o",
            str(tmp_path / "t.emu"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("simulacra: --in-bits must be 1..26") and err.count("\n") == 1


def test_missing_artifact_is_one_line_error(tmp_path, capsys):
    assert main(["emu", "query", str(tmp_path / "none.emu"), "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("simulacra: no such artifact") and err.count("\n") == 1


# --- with the codec ----------------------------------------------------------------


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    if not _codec_ready():
        pytest.skip("emulator codec not built yet")
    d = tmp_path_factory.mktemp("emu")
    src = d / "segment.py"
    src.write_text(SOURCE)
    out = d / "tiny.emu"
    assert _compile_tiny(src, out) == 0
    return out


def _compile_tiny(src, out) -> int:
    """``simulacra emu compile`` of SOURCE's ``tiny`` (6 -> 4 bits), with --json."""
    args = ["emu", "compile", f"{src}:tiny", "--in-bits", "6", "--out-bits", "4"]
    return main([*args, "-o", str(out), "--json"])


@needs_codec
def test_a_failing_function_is_a_one_line_error(tmp_path, capsys):
    src = tmp_path / "broken.py"
    src.write_text("def boom(x):\n    raise ValueError('no luck')\n")
    rc = main(
        [
            "emu",
            "compile",
            f"{src}:boom",
            "--in-bits",
            "4",
            "--out-bits",
            "4",
            "-o",
            str(tmp_path / "b.emu"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert err == f"simulacra: {src}:boom raised ValueError: no luck\n"
    assert not (tmp_path / "b.emu").exists()


@needs_codec
def test_compile_reports_json(compiled, tmp_path, capsys):
    src = tmp_path / "segment.py"
    src.write_text(SOURCE)
    out = tmp_path / "again.emu"
    rc = _compile_tiny(src, out)
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert summary["nbytes"] == out.stat().st_size
    assert (summary["in_bits"], summary["out_bits"], summary["packed_bytes"]) == (6, 4, 32)


@needs_codec
def test_query_prints_one_output_per_line(compiled, capsys):
    xs = [0, 1, 17, 63]
    assert main(["emu", "query", str(compiled), *map(str, xs[:3]), "0x3f"]) == 0
    assert capsys.readouterr().out.split() == [str(tiny(x)) for x in xs]


@needs_codec
def test_query_json_and_range_check(compiled, capsys):
    assert main(["emu", "query", str(compiled), "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"results": [{"x": 5, "y": tiny(5)}]}
    assert main(["emu", "query", str(compiled), "64"]) == 1
    assert "does not fit in 6 bits" in capsys.readouterr().err


@needs_codec
def test_inspect_json(compiled, capsys):
    assert main(["emu", "inspect", str(compiled), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nbytes"] == compiled.stat().st_size
    assert main(["emu", "inspect", str(compiled)]) == 0
    assert capsys.readouterr().out.strip()


@needs_codec
def test_patch_writes_a_new_version_and_keeps_the_original(compiled, tmp_path, capsys):
    patched = tmp_path / "patched.emu"
    y = tiny(7) ^ 0xF
    assert main(["emu", "patch", str(compiled), f"7={y}", "0x8=0", "-o", str(patched)]) == 0
    capsys.readouterr()
    assert main(["emu", "query", str(patched), "7", "8", "9"]) == 0
    assert capsys.readouterr().out.split() == [str(y), "0", str(tiny(9))]
    assert main(["emu", "query", str(compiled), "7"]) == 0
    assert capsys.readouterr().out.split() == [str(tiny(7))]


@needs_codec
def test_probe_runs(compiled, capsys):
    assert main(["emu", "probe", str(compiled), "--lines", "2", "--json"]) == 0
    json.loads(capsys.readouterr().out)


@needs_codec
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_artifact_is_one_line_error(compiled, tmp_path, capsys, damage):
    data = bytearray(compiled.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x40
    else:
        del data[len(data) // 2 :]
    bad = tmp_path / "bad.emu"
    bad.write_bytes(bytes(data))
    assert main(["emu", "query", str(bad), "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("simulacra: ") and captured.err.count("\n") == 1
    assert main(["emu", "inspect", str(bad), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "CorruptArtifact"


@pytest.mark.slow
@needs_codec
def test_vectorized_compile_in_a_fresh_process(tmp_path):
    out = tmp_path / "sbox.emu"
    cmd = [sys.executable, "-m", "simulacra.cli", "emu"]
    compiled = subprocess.run(
        [
            *cmd,
            "compile",
            "simulacra.codecs.emulator.examples:aes_sbox",
            "--vectorized",
            "--in-bits",
            "8",
            "--out-bits",
            "8",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert compiled.returncode == 0, compiled.stderr
    res = subprocess.run(
        [*cmd, "query", str(out), "0", "0x53", "255"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(0x63), str(0xED), str(0x16)]
