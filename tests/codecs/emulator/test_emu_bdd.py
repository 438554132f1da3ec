import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulacra.codecs.emulator.bdd import BDD
from simulacra.codecs.emulator.examples import SUITE, truth_table
from simulacra.errors import CorruptArtifact, PayloadTooBig


def _table(fn, in_bits):
    return np.array([fn(x) for x in range(1 << in_bits)], dtype=np.uint64)


@st.composite
def tables(draw):
    in_bits = draw(st.integers(0, 9))
    out_bits = draw(st.integers(1, 12))
    # Few distinct values make sharing and reduction actually happen.
    palette = draw(st.lists(st.integers(0, (1 << out_bits) - 1), min_size=1, max_size=6))
    idx = draw(
        st.lists(st.integers(0, len(palette) - 1), min_size=1 << in_bits, max_size=1 << in_bits)
    )
    return in_bits, out_bits, np.array([palette[i] for i in idx], dtype=np.uint64)


@settings(max_examples=60, deadline=None)
@given(tables())
def test_query_is_exact_and_survives_serialization(case):
    in_bits, out_bits, table = case
    bdd = BDD.from_truth_table(table, in_bits, out_bits)
    xs = np.arange(1 << in_bits, dtype=np.uint64)
    assert np.array_equal(bdd.query(xs), table)
    assert [bdd.query_one(x) for x in range(1 << in_bits)] == table.tolist()
    data = bdd.to_bytes()
    assert len(data) == bdd.nbytes
    again = BDD.from_bytes(data)
    assert again.node_count == bdd.node_count
    assert np.array_equal(again.query(xs), table)
    assert again.to_bytes() == data


@settings(max_examples=40, deadline=None)
@given(tables(), st.integers(0, 4), st.integers(1, 6))
def test_query_with_tiny_accelerator_tables(case, top_log, segment_log):
    # Small table budgets force several segments below the top slice.
    from simulacra.codecs.emulator import bdd as bdd_module

    in_bits, out_bits, table = case
    saved = bdd_module._TOP_ENTRIES, bdd_module._SEGMENT_ENTRIES
    bdd_module._TOP_ENTRIES, bdd_module._SEGMENT_ENTRIES = 1 << top_log, 1 << segment_log
    try:
        bdd = BDD.from_truth_table(table, in_bits, out_bits)
        xs = np.arange(1 << in_bits, dtype=np.uint64)
        assert np.array_equal(bdd.query(xs, chunk=7), table)
        assert [bdd.query_one(x) for x in range(1 << in_bits)] == table.tolist()
    finally:
        bdd_module._TOP_ENTRIES, bdd_module._SEGMENT_ENTRIES = saved


def test_query_ignores_high_bits_and_keeps_shape():
    bdd = BDD.from_truth_table(_table(lambda x: x ^ 5, 3), 3, 3)
    xs = np.array([[0, 1], [8 + 2, 7]], dtype=np.uint64)
    assert bdd.query(xs).tolist() == [[5, 4], [7, 2]]


@pytest.mark.parametrize(
    ("fn", "in_bits", "out_bits", "nodes"),
    [
        (lambda x: 0, 4, 1, 0),
        (lambda x: 1, 4, 3, 0),
        (lambda x: x & 1, 4, 1, 1),
        (lambda x: int(x == 15), 4, 1, 4),  # AND: one node per variable
        (lambda x: x.bit_count() & 1, 4, 1, 7),  # parity: 2 per level, 1 at the root
        (lambda x: (x & 1) * 3, 4, 2, 1),  # two outputs share one node
        (lambda x: x, 3, 3, 3),
    ],
)
def test_node_counts_of_small_functions(fn, in_bits, out_bits, nodes):
    assert BDD.from_truth_table(_table(fn, in_bits), in_bits, out_bits).node_count == nodes


def test_serialization_bytes_are_pinned():
    bdd = BDD.from_truth_table(np.array([0, 1], dtype=np.uint64), 1, 1)
    # header | level count 1 | lo=0, hi=1 in 1 bit each (base 2), root=2 in 2 bits (base 3)
    assert bdd.to_bytes() == b"BD\x02\x01\x01" + b"\x01" + bytes([0b1010])


@pytest.mark.parametrize(
    ("name", "documented"),
    [
        ("popcount16", 583),
        ("crc16", 279),
        ("aes_sbox", 1_077),
        ("row2048", 8_008),
        ("mul8x8", 44_132),
        ("sin16", 34_852),
    ],
)
def test_baseline_bytes_reproduce_the_baselines_table(name, documented):
    s = SUITE[name]
    bdd = BDD.from_truth_table(truth_table(s.fn, s.in_bits), s.in_bits, s.out_bits)
    assert bdd.baseline_bytes() == documented


@pytest.mark.slow
def test_ltl5x5_baseline_bytes():
    s = SUITE["ltl5x5"]
    table = truth_table(s.fn, s.in_bits)
    bdd = BDD.from_truth_table(table, s.in_bits, s.out_bits)
    assert bdd.baseline_bytes() == 630
    xs = np.random.default_rng(0).integers(0, 1 << 25, 50_000).astype(np.uint64)
    assert np.array_equal(bdd.query(xs), table[xs.astype(np.intp)])


def _identity_bytes() -> bytes:
    return BDD.from_truth_table(_table(lambda x: x, 3), 3, 3).to_bytes()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b"XD" + b[2:],  # magic
        lambda b: b[:2] + b"\x01" + b[3:],  # format version
        lambda b: b[:4],  # truncated header
        lambda b: b[:6],  # truncated level counts
        lambda b: b[:-1],  # truncated pointers
        lambda b: b + b"\x00",  # trailing byte
        lambda b: b[:3] + bytes([40]) + b[4:],  # in_bits out of range
        lambda b: b[:4] + b"\x00" + b[5:],  # zero out_bits
        lambda b: b[:5] + b"\x05" + b[6:],  # level count disagrees with length
        lambda b: b[:5] + b"\xff\xff\xff\xff\xff\x01" + b[8:],  # overlong count
    ],
)
def test_corrupt_bytes_raise_corrupt_artifact(mutate):
    with pytest.raises(CorruptArtifact):
        BDD.from_bytes(mutate(_identity_bytes()))


def _craft(in_bits, counts, pointers, out_bits=1):
    import struct

    from simulacra.codecs.emulator.bdd import _bits_for, _leb128, _pack_bits

    base = [2 + sum(counts[:v]) for v in range(in_bits + 1)]
    widths = [_bits_for(base[v]) for v in range(in_bits) for _ in range(2 * counts[v])]
    widths += [_bits_for(base[in_bits])] * out_bits
    head = struct.pack("<2sBBB", b"BD", 2, in_bits, out_bits) + _leb128(counts)
    return head + _pack_bits(np.array(pointers, dtype=np.int64), np.array(widths))


@pytest.mark.parametrize(
    ("counts", "pointers"),
    [
        ([1, 0], [1, 1, 2]),  # equal children: not reduced
        ([1, 1], [0, 1, 3, 0, 3]),  # child is the node itself
        ([1, 2], [0, 1, 0, 2, 3, 0, 4]),  # child on the same level
        ([1, 0], [0, 1, 3]),  # root past the table
    ],
)
def test_structurally_bad_diagrams_are_rejected(counts, pointers):
    with pytest.raises(CorruptArtifact):
        BDD.from_bytes(_craft(2, counts, pointers))


def test_crafted_good_diagram_is_accepted():
    bdd = BDD.from_bytes(_craft(2, [1, 1], [0, 1, 2, 0, 3]))
    # x1 ? 0 : x0
    assert bdd.query(np.arange(4)).tolist() == [0, 1, 0, 0]


def test_size_limit():
    with pytest.raises(PayloadTooBig):
        BDD.from_bytes(_identity_bytes(), max_bytes=8)


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError):
        BDD.from_truth_table(np.zeros(3, dtype=np.uint64), 2, 1)
    with pytest.raises(ValueError):
        BDD.from_truth_table(np.zeros(4, dtype=np.uint64), 2, 0)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, (1 << 40) - 1)), max_size=60),
    st.integers(1, 9),
)
def test_bit_stream_round_trip_across_chunks(items, chunk):
    from simulacra.codecs.emulator.bdd import _pack_bits, _unpack_bits

    widths = np.array([w for w, _ in items], dtype=np.int64)
    values = np.array([v & ((1 << w) - 1) for w, v in items], dtype=np.int64)
    data = _pack_bits(values, widths, chunk=chunk)
    assert len(data) == -(-int(widths.sum()) // 8)
    assert _unpack_bits(data, widths).tolist() == values.tolist()


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damaged_bytes_never_crash(data):
    good = BDD.from_truth_table(_table(lambda x: (x * 7) % 11, 5), 5, 4).to_bytes()
    raw = bytearray(good)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        bdd = BDD.from_bytes(bytes(raw[:cut]))
    except CorruptArtifact:
        return
    # Whatever passes the checks is a well-formed diagram: every walk ends on a terminal.
    out = bdd.query(np.arange(1 << min(bdd.in_bits, 10), dtype=np.uint64))
    assert int(out.max(initial=0)) < 1 << bdd.out_bits
