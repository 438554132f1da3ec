import hashlib

import numpy as np
import pytest

from simulacra.codecs.emulator import examples as ex
from simulacra.codecs.emulator.examples import SUITE, truth_table


def test_suite_registry_widths():
    widths = {name: (s.in_bits, s.out_bits) for name, s in SUITE.items()}
    assert widths == {
        "row2048": (16, 16),
        "popcount16": (16, 5),
        "crc16": (16, 16),
        "mul8x8": (16, 16),
        "random16": (16, 16),
        "sin16": (16, 12),
        "aes_sbox": (8, 8),
        "ltl5x5": (25, 1),
    }
    fn, in_bits, out_bits = SUITE["crc16"]
    assert fn is ex.crc16 and (in_bits, out_bits) == (16, 16)


@pytest.mark.parametrize("name", [n for n, s in SUITE.items() if s.in_bits <= 16])
def test_vectorized_equals_scalar_on_whole_domain(name):
    s = SUITE[name]
    table = truth_table(s.fn, s.in_bits)
    assert table.dtype == np.uint64
    assert table.tolist() == [s.fn_py(x) for x in range(1 << s.in_bits)]
    assert int(table.max()) < 1 << s.out_bits


def test_ltl5x5_vectorized_equals_scalar_on_a_sample():
    xs = np.random.default_rng(3).integers(0, 1 << 25, 20_000).astype(np.uint64)
    assert ex.ltl5x5(xs).tolist() == [ex.ltl5x5_py(int(x)) for x in xs]


def test_crc16_known_values():
    assert ex.crc16_ccitt(b"123456789") == 0x29B1  # the CRC-16/CCITT-FALSE check value
    assert ex.crc16_py(0x3132) == ex.crc16_ccitt(b"12") == 0x3DBA
    assert ex.crc16(np.array([0x3132, 0])).tolist() == [0x3DBA, 0x1D0F]


def test_aes_sbox_known_values():
    assert ex.AES_SBOX[:4] == (0x63, 0x7C, 0x77, 0x7B)
    assert ex.aes_sbox(np.array([0x00, 0x53, 0xFF])).tolist() == [0x63, 0xED, 0x16]
    assert sorted(ex.AES_SBOX) == list(range(256))


def test_sin16_endpoints():
    xs = np.array([0, 16384, 32768, 49152, 65535])
    assert ex.sin16(xs).tolist() == [2048, 4095, 2048, 0, 2047]


@pytest.mark.parametrize(
    ("tiles", "moved"),
    [
        ([1, 1, 1, 1], [2, 2, 0, 0]),
        ([0, 1, 0, 1], [2, 0, 0, 0]),
        ([2, 1, 1, 0], [2, 2, 0, 0]),
        ([1, 1, 2, 0], [2, 2, 0, 0]),
        ([3, 0, 0, 3], [4, 0, 0, 0]),
        ([1, 2, 3, 4], [1, 2, 3, 4]),
        ([15, 15, 0, 0], [15, 15, 0, 0]),
        ([0, 0, 0, 0], [0, 0, 0, 0]),
    ],
)
def test_row2048_moves(tiles, moved):
    def pack(ts):
        return sum(t << (4 * i) for i, t in enumerate(ts))

    assert ex.row2048_py(pack(tiles)) == pack(moved)
    assert ex.row2048(np.array([pack(tiles)])).tolist() == [pack(moved)]


def test_small_arithmetic():
    assert ex.mul8x8(np.array([0xFFFF, 0x0203])).tolist() == [0xFE01, 6]
    assert ex.popcount16(np.array([0xFFFF, 0x8001])).tolist() == [16, 2]


@pytest.mark.parametrize(
    ("centre", "neighbours", "alive"),
    [(0, 6, 0), (0, 7, 1), (0, 9, 1), (0, 10, 0), (1, 5, 0), (1, 6, 1), (1, 10, 1), (1, 11, 0)],
)
def test_ltl5x5_rule(centre, neighbours, alive):
    others = [b for b in range(25) if b != 12][:neighbours]
    x = sum(1 << b for b in others) | (centre << 12)
    assert ex.ltl5x5_py(x) == alive
    assert ex.ltl5x5(np.array([x])).tolist() == [alive]


def test_random16_is_fixed():
    table = truth_table(ex.random16, 16)
    assert table[:4].tolist() == [55746, 41743, 33497, 17680]
    assert (
        hashlib.sha256(table.tobytes()).hexdigest()
        == "98fb1a72e5c2981c69b52c5720b08f6270e731f1ec8b8f23e66cc1a46533ea45"
    )
