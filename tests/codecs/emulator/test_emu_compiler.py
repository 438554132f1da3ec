import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulacra.codecs.emulator import compile_emulator, compile_table
from simulacra.errors import CodecError


def _all(n):
    return np.arange(1 << n, dtype=np.uint64)


def _crc8(xs):
    # CRC-8 (poly 0x07) of one byte: GF(2)-linear, so it must come out affine.
    crc = xs.astype(np.uint64) & np.uint64(0xFF)
    for _ in range(8):
        top = (crc >> np.uint64(7)) & np.uint64(1)
        crc = ((crc << np.uint64(1)) & np.uint64(0xFF)) ^ (top * np.uint64(0x07))
    return crc ^ np.uint64(0x5A)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(6, 10), st.integers(1, 16), st.integers(0, 2**32 - 1), st.integers(0, 3))
def test_exact_on_random_tables(n, m, seed, structure):
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 1 << m, 1 << n, dtype=np.uint64)
    if structure == 1:  # mostly constant with a few exceptions
        table[:] = table[0]
        table[rng.integers(0, 1 << n, 5)] ^= np.uint64(1)
    elif structure == 2:  # mostly affine over GF(2)
        cols = rng.integers(0, 1 << m, n, dtype=np.uint64)
        xs = _all(n)
        table = np.zeros(1 << n, dtype=np.uint64)
        for i in range(n):
            table ^= ((xs >> np.uint64(i)) & np.uint64(1)) * cols[i]
    emu = compile_table(table, n, m, seed=seed)
    assert emu.query(_all(n)).tolist() == table.tolist()
    assert emu.report()["verified"] == {"kind": "exhaustive", "inputs": 1 << n}


def test_affine_chosen_for_crc_like():
    emu = compile_emulator(_crc8, 8, 8, vectorized=True)
    assert emu.query(_all(8)).tolist() == _crc8(_all(8)).tolist()
    assert emu.report()["shares"] == {"affine": 1.0}
    assert emu.nbytes < 80


def test_constant():
    emu = compile_emulator(lambda x: 0x2A, 10, 7)
    assert emu.report()["shares"] == {"const": 1.0}
    assert emu(0) == emu(1023) == 0x2A


def test_popcount_is_a_count_net():
    emu = compile_emulator(lambda xs: np.bitwise_count(xs), 12, 4, vectorized=True)
    assert emu.report()["shares"] == {"count": 1.0}
    assert emu.query(_all(12)).tolist() == np.bitwise_count(_all(12)).tolist()


def test_product_is_a_bit_polynomial():
    fn = lambda xs: (xs >> np.uint64(5)) * (xs & np.uint64(31))  # noqa: E731
    emu = compile_emulator(fn, 10, 10, vectorized=True)
    assert emu.report()["shares"] == {"bitpoly": 1.0}
    assert emu.report()["fixes"]["output_fixes"] == 0
    assert emu.query(_all(10)).tolist() == fn(_all(10)).tolist()


def test_smooth_is_a_polynomial_with_few_fixes():
    xs = _all(12)
    table = np.rint((np.sin(2 * np.pi * xs / 4096) + 1) * 511.5).astype(np.uint64)
    emu = compile_table(table, 12, 10)
    report = emu.report()
    assert report["shares"] == {"poly": 1.0}
    assert report["fixes"]["output_fixes"] < 64
    assert emu.nbytes < 1024
    assert emu.query(xs).tolist() == table.tolist()


def test_progress_and_scalar_fn():
    seen = []
    emu = compile_emulator(lambda x: (x * 7) & 0xFF, 8, 8, progress=lambda *a: seen.append(a))
    stages = {s for s, _, _ in seen}
    assert {"probe", "search", "fixes", "verify"} <= stages
    assert all(0 < done <= total for _, done, total in seen)
    assert emu(13) == 91


@pytest.mark.parametrize(
    ("fn", "vectorized", "message"),
    [
        (lambda x: 256, False, "not a 8-bit integer"),
        (lambda x: -1, False, "not a 8-bit integer"),
        (lambda xs: xs * 0 + 300, True, "does not fit in 8 bits"),
        (lambda xs: xs[:3], True, "expected integers of shape"),
        (lambda xs: xs * 0.5, True, "expected integers"),
    ],
)
def test_bad_segments(fn, vectorized, message):
    with pytest.raises(CodecError, match=message):
        compile_emulator(fn, 8, 8, vectorized=vectorized)


def test_bad_shapes():
    with pytest.raises(CodecError):
        compile_emulator(lambda x: 0, 0, 8)
    with pytest.raises(CodecError):
        compile_emulator(lambda x: 0, 8, 65)


def test_scalar_path_equals_batched_path():
    rng = np.random.default_rng(5)
    xs = _all(10)
    tables = [
        rng.integers(0, 1 << 9, 1 << 10, dtype=np.uint64),  # packed
        _crc8(xs & np.uint64(255)) | ((xs >> np.uint64(8)) << np.uint64(8)),  # affine
        np.bitwise_count(xs).astype(np.uint64),  # count
        (xs >> np.uint64(5)) * (xs & np.uint64(31)),  # bitpoly
        np.rint((np.sin(2 * np.pi * xs / 1024) + 1) * 300).astype(np.uint64),  # poly
    ]
    for table in tables:
        m = int(table.max()).bit_length()
        emu = compile_table(table, 10, m).patch({3: 1})
        expected = table.copy()
        expected[3] = 1
        assert [emu(x) for x in range(1 << 10)] == expected.tolist()
        assert emu.query(xs).tolist() == expected.tolist()


def test_power_map_is_found_for_the_aes_sbox():
    from simulacra.codecs.emulator.examples import aes_sbox

    emu = compile_emulator(aes_sbox, 8, 8, vectorized=True)
    assert emu.report()["shares"] == {"gfpow": 1.0}
    assert emu.query(_all(8)).tolist() == aes_sbox(_all(8)).tolist()
    assert emu.nbytes < 128  # the packed table alone is 256


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "baseline"), [("crc16", 279), ("popcount16", 583), ("mul8x8", 44_132)]
)
def test_suite_functions_beat_their_baselines(name, baseline):
    from simulacra.codecs.emulator.examples import SUITE

    sf = SUITE[name]
    emu = compile_emulator(sf.fn, sf.in_bits, sf.out_bits, vectorized=True)
    xs = _all(sf.in_bits)
    assert emu.query(xs).tolist() == sf.fn(xs).tolist()
    assert emu.nbytes <= baseline
