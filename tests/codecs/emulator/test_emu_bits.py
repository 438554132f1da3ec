import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulacra.codecs.emulator.bits import (
    SparseTable,
    decode_keys,
    encode_keys,
    pack_uint,
    unpack_uint,
    unzigzag,
    zigzag,
)
from simulacra.errors import CorruptArtifact, PayloadTooBig


def test_pack_uint_exact_bytes():
    assert pack_uint(np.array([1, 2, 3]), 2) == bytes([0b111001])
    assert pack_uint(np.array([0x1234]), 16) == b"\x34\x12"
    assert pack_uint(np.array([5]), 0) == b""


@given(st.integers(0, 64), st.lists(st.integers(0, 2**64 - 1), max_size=80))
def test_pack_roundtrip(width, raw):
    values = np.array([v & ((1 << width) - 1) for v in raw], dtype=np.uint64)
    data = pack_uint(values, width)
    assert len(data) == (len(raw) * width + 7) // 8
    assert unpack_uint(data, width, len(raw)).tolist() == values.tolist()


def test_unpack_short_and_huge():
    with pytest.raises(CorruptArtifact):
        unpack_uint(b"\x00", 5, 4)
    with pytest.raises(PayloadTooBig):
        unpack_uint(b"", 1, 1 << 40)


@given(st.lists(st.integers(-(2**62), 2**62), max_size=50))
def test_zigzag_roundtrip(vals):
    assert unzigzag(zigzag(np.array(vals, dtype=np.int64))).tolist() == vals


@settings(max_examples=60)
@given(
    st.integers(1, 20).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, 2**n - 1))))
)
def test_keys_roundtrip(case):
    n, keys = case
    arr = np.array(sorted(keys), dtype=np.uint64)
    data = encode_keys(arr, 1 << n)
    got, used = decode_keys(data + b"tail", 1 << n)
    assert used == len(data)
    assert got.tolist() == arr.tolist()


def test_keys_pick_the_smaller_encoding():
    sparse = encode_keys(np.array([7, 1000], dtype=np.uint64), 1 << 16)
    dense = encode_keys(np.arange(0, 1 << 12, 2, dtype=np.uint64), 1 << 12)
    assert sparse[0] == 0 and len(sparse) < 20  # Elias-Fano
    assert dense[0] == 1 and len(dense) == 6 + (1 << 12) // 8  # bitmap


def test_sparse_table_lookup_and_bytes():
    t = SparseTable(np.array([9, 3, 200]), np.array([1, 5, 7]), 256)
    assert t.lookup(np.array([3, 4, 9, 200, 255], dtype=np.uint64)).tolist() == [5, 0, 1, 7, 0]
    back = SparseTable.from_bytes(t.to_bytes(), 256)
    assert back.keys.tolist() == [3, 9, 200] and back.values.tolist() == [5, 1, 7]
    empty = SparseTable(np.zeros(0), np.zeros(0), 256)
    assert SparseTable.from_bytes(empty.to_bytes(), 256).lookup(
        np.array([1], np.uint64)
    ).tolist() == [0]


def test_sparse_table_rejects_bad_lengths():
    data = SparseTable(np.array([1, 2]), np.array([3, 3]), 64).to_bytes()
    with pytest.raises(CorruptArtifact):
        SparseTable.from_bytes(data[:-1], 64)
    with pytest.raises(CorruptArtifact):
        SparseTable.from_bytes(data + b"\x00", 64)


def test_repeated_values_use_a_dictionary():
    keys = np.arange(0, 4000, 4, dtype=np.uint64)
    values = np.where(keys % 8 == 0, 0xFFF, 0x1).astype(np.uint64)
    t = SparseTable(keys, values, 1 << 12)
    data = t.to_bytes()
    head = len(encode_keys(keys, 1 << 12))
    assert data[head] == 0x80  # dictionary: 2 entries of 12 bits, then 1-bit indices
    assert len(data) == head + 1 + 4 + 1 + 3 + 1000 // 8
    back = SparseTable.from_bytes(data, 1 << 12)
    assert back.values.tolist() == values.tolist()


@settings(max_examples=40)
@given(st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 7)), max_size=60))
def test_sparse_table_roundtrip(pairs):
    d = dict(pairs)
    t = SparseTable(np.array(list(d), dtype=np.uint64), np.array(list(d.values()), np.uint64), 1024)
    back = SparseTable.from_bytes(t.to_bytes(), 1024)
    assert dict(zip(back.keys.tolist(), back.values.tolist(), strict=True)) == d
