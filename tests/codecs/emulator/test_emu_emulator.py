import json
import subprocess
import sys

import numpy as np
import pytest

from simulacra.codecs.emulator import CODEC_VERSION, Emulator, compile_table, load_emulator
from simulacra.errors import CodecError, CorruptArtifact, PayloadTooBig

N, M = 9, 7


def _table():
    xs = np.arange(1 << N, dtype=np.uint64)
    # An affine core plus a sprinkle of exceptions, so fixes are exercised.
    table = (xs ^ (xs >> np.uint64(1))) & np.uint64(0x7F)
    table[[5, 77, 300]] ^= np.uint64(0x11)
    return table


@pytest.fixture(scope="module")
def emu():
    return compile_table(_table(), N, M, seed=1)


def test_query_shapes_and_scalar(emu):
    table = _table()
    xs = np.arange(1 << N).reshape(32, 16)
    got = emu.query(xs)
    assert got.dtype == np.uint64 and got.shape == (32, 16)
    assert got.ravel().tolist() == table.tolist()
    assert emu(77) == int(table[77])
    assert emu.query([]).shape == (0,)


@pytest.mark.parametrize("bad", [[-1], [1 << N], [1.5]])
def test_query_rejects_out_of_domain(emu, bad):
    with pytest.raises(CodecError):
        emu.query(np.array(bad))
    with pytest.raises(CodecError):
        emu(1 << N)


def test_save_load_roundtrip(emu, tmp_path):
    path = tmp_path / "f.emu"
    emu.save(path)
    back = load_emulator(path)
    assert back.to_bytes() == emu.to_bytes() == path.read_bytes()
    assert back.nbytes == emu.nbytes
    xs = np.arange(1 << N)
    assert back.query(xs).tolist() == emu.query(xs).tolist()
    assert Emulator.from_bytes(emu.to_bytes()).query(xs).tolist() == _table().tolist()


_CHILD = """
import sys, json, numpy as np
sys.path.insert(0, {src!r})
from simulacra.codecs.emulator import compile_table, load_emulator
from tests_table import table
emu = compile_table(table(), {n}, {m}, seed=1)
back = load_emulator({path!r})
xs = np.arange(1 << {n})
print(json.dumps([emu.to_bytes().hex(), back.query(xs).tolist()]))
"""


def test_determinism_across_processes(emu, tmp_path):
    path = tmp_path / "f.emu"
    emu.save(path)
    (tmp_path / "tests_table.py").write_text(
        "import numpy as np\n"
        "def table():\n"
        f"    xs = np.arange(1 << {N}, dtype=np.uint64)\n"
        "    t = (xs ^ (xs >> np.uint64(1))) & np.uint64(0x7F)\n"
        "    t[[5, 77, 300]] ^= np.uint64(0x11)\n"
        "    return t\n"
    )
    code = _CHILD.format(src="src", n=N, m=M, path=str(path))
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(tmp_path.parent),
        env={"PYTHONPATH": f"{tmp_path}:{_src()}", "PATH": "/usr/bin:/bin"},
    )
    hexbytes, answers = json.loads(out.stdout)
    assert bytes.fromhex(hexbytes) == emu.to_bytes()
    assert answers == _table().tolist()


def _src():
    import simulacra

    return str(__import__("pathlib").Path(simulacra.__file__).parents[1])


def test_every_corrupted_byte_is_caught(emu):
    data = emu.to_bytes()
    xs = np.arange(1 << N)
    truth = _table().tolist()
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        with pytest.raises(CorruptArtifact):
            got = Emulator.from_bytes(bytes(bad))
            # Were it ever accepted, it must still answer exactly.
            assert got.query(xs).tolist() == truth
            raise CorruptArtifact("accepted")


def test_truncated_and_wrong_version(emu, tmp_path):
    data = emu.to_bytes()
    for cut in (0, 5, 12, len(data) // 2, len(data) - 1):
        with pytest.raises(CorruptArtifact):
            Emulator.from_bytes(data[:cut])
    newer = bytearray(data)
    newer[8] = CODEC_VERSION + 1
    with pytest.raises(CorruptArtifact, match="not supported"):
        Emulator.from_bytes(bytes(newer))
    path = tmp_path / "x.emu"
    path.write_bytes(b"SIMEMU")
    with pytest.raises(CorruptArtifact):
        load_emulator(path)


def test_oversized_artifact_is_refused(tmp_path, monkeypatch):
    from simulacra.codecs.emulator import emulator as emu_mod

    path = tmp_path / "big.emu"
    path.write_bytes(b"\x00" * 64)
    monkeypatch.setattr(emu_mod, "MAX_ARTIFACT_BYTES", 32)
    with pytest.raises(PayloadTooBig):
        load_emulator(path)


def test_patch_makes_a_new_version(emu, tmp_path):
    table = _table()
    patched = emu.patch({3: 0x7F, 77: 0})
    assert patched.version == emu.version + 1
    assert emu(3) == int(table[3]) and emu(77) == int(table[77])
    assert patched(3) == 0x7F and patched(77) == 0
    expected = table.copy()
    expected[[3, 77]] = [0x7F, 0]
    xs = np.arange(1 << N)
    assert patched.query(xs).tolist() == expected.tolist()
    again = patched.patch({3: 1})
    assert again.version == emu.version + 2 and again(3) == 1 and again(77) == 0
    path = tmp_path / "p.emu"
    again.save(path)
    back = load_emulator(path)
    assert back.version == again.version
    assert back.report()["patches"] == 2
    assert back.query(xs).tolist() == again.query(xs).tolist()
    with pytest.raises(CodecError):
        emu.patch({1 << N: 0})
    with pytest.raises(CodecError):
        emu.patch({0: 1 << M})


def test_report(emu):
    r = emu.report()
    assert r["codec_version"] == CODEC_VERSION
    assert (r["in_bits"], r["out_bits"], r["version"]) == (N, M, 1)
    assert r["bytes"]["total"] == emu.nbytes
    assert set(r["bytes"]["sections"]) >= {"meta", "model"}
    assert r["fixes"]["latent_fixes"] == 0
    assert r["fixes"]["output_fixes"] == len(emu.output_fixes)
    assert abs(sum(r["shares"].values()) - 1.0) < 1e-9
    assert r["verified"] == {"kind": "exhaustive", "inputs": 1 << N}
    assert r["compile_seconds"] >= 0
    json.dumps(r)


def test_uncertainty(emu):
    xs = np.arange(1 << N)
    u = emu.uncertainty(xs)
    assert u.shape == xs.shape and u.dtype == np.float64
    assert float(u.min()) >= 0.0 and float(u.max()) <= 1.0
    assert emu.report()["fixes"]["output_fixes"] == 3
    clean = compile_table(np.arange(1 << N, dtype=np.uint64) & np.uint64(0x7F), N, M)
    assert clean.uncertainty(xs).tolist() == [0.0] * (1 << N)
    assert float(u.max()) > 0.0  # fixes make their neighbourhood uncertain


@pytest.mark.parametrize("mode", ["int", "bits"])
def test_boundaries(emu, mode):
    b = emu.boundaries(lines=3, samples=20, seed=4, mode=mode)
    assert b["mode"] == mode and len(b["lines"]) == 3
    per_line = 19 if mode == "int" else N
    assert b["steps"] == 3 * per_line
    assert b["changes"] == sum(len(line["changes"]) for line in b["lines"])
    for line in b["lines"]:
        for t, x0, x1, y0, y1 in line["changes"]:
            assert 0 < t and emu(x0) == y0 and emu(x1) == y1 and y0 != y1
    assert b == emu.boundaries(lines=3, samples=20, seed=4, mode=mode)
    json.dumps(b)
    with pytest.raises(CodecError):
        emu.boundaries(mode="diagonal")


def _other_tables():
    xs = np.arange(1 << N, dtype=np.uint64)
    return {
        "count": np.bitwise_count(xs).astype(np.uint64),
        "poly": np.rint((np.sin(2 * np.pi * xs / 512) + 1) * 60).astype(np.uint64),
        "bitpoly": (xs >> np.uint64(6)) * (xs & np.uint64(15)),
    }


@pytest.mark.parametrize("kind", ["fixture", "count", "poly", "bitpoly"])
def test_resealed_mutations_fail_cleanly(emu, kind):
    # A mutation with a valid checksum is a different artifact: it may load, but
    # it must never crash with anything but one of our errors.
    import struct
    import zlib

    from simulacra.errors import SimulacraError

    if kind != "fixture":
        emu = compile_table(_other_tables()[kind], N, M)
        assert kind in emu.report()["shares"]
    data = emu.to_bytes()
    xs = np.arange(1 << N)
    for i in range(12, len(data) - 4):
        for delta in (1, 0x80):
            body = bytearray(data[:-4])
            body[i] = (body[i] + delta) & 0xFF
            sealed = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
            try:
                got = Emulator.from_bytes(sealed)
                assert got.query(xs).tolist() == [got(int(x)) for x in xs]
            except SimulacraError:
                pass


def test_review_regions_point_at_the_fixes(emu):
    regions = emu.report()["review_regions"]
    # 512 inputs in 64 windows of 8; the three planted exceptions sit in windows 0, 9, 37.
    assert [(r["start"], r["end"], r["fixes"], r["reason"]) for r in regions] == [
        (0, 8, 1, "fix_density"),
        (72, 80, 1, "fix_density"),
        (296, 304, 1, "fix_density"),
    ]
    assert all(r["mean_uncertainty"] == 0.0 and r["heuristic"] for r in regions)
    # A limit of 2 keeps one region per ranking; no window has a decision margin here.
    assert emu.review_regions(limit=2) == regions[:1]


def test_review_regions_rank_by_fixes_then_margin():
    from simulacra.codecs.emulator.examples import SUITE

    sf = SUITE["sin16"]
    xs = np.arange(1 << 12, dtype=np.uint64) << np.uint64(4)
    table = sf.fn(xs)  # sin16 sampled on 12 bits: a polynomial with rounding fixes
    emu = compile_table(table, 12, 12)
    regions = emu.review_regions()
    assert 0 < len(regions) <= 8
    by_density = [r for r in regions if r["reason"] == "fix_density"]
    assert by_density and by_density[0]["fixes"] == max(r["fixes"] for r in regions)
    for r in regions:
        assert 0 <= r["start"] < r["end"] <= 1 << 12 and r["end"] - r["start"] == 64
        assert 0.0 <= r["mean_uncertainty"] <= 1.0
        fixes = emu.output_fixes.keys
        assert r["fixes"] == int(np.count_nonzero((fixes >= r["start"]) & (fixes < r["end"])))
    assert any(r["mean_uncertainty"] > 0 for r in regions)
