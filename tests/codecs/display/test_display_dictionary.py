import numpy as np
import pytest

from simulacra.codecs.display import DecoderDictionary, EncoderDictionary, SlotLru
from simulacra.errors import CodecError


def test_lowest_free_slot_then_least_recently_used():
    lru = SlotLru(3)
    assert [lru.insert() for _ in range(3)] == [0, 1, 2]
    lru.touch(0)
    assert lru.order() == [1, 2, 0]
    assert lru.insert() == 1  # LRU
    assert lru.insert() == 2
    assert lru.order() == [0, 1, 2]
    lru.reset()
    assert (lru.filled, lru.order(), lru.insert()) == (0, [], 0)


@pytest.mark.parametrize("slots", [-1, 65537, 2.0, None])
def test_slot_count_limits(slots):
    with pytest.raises(CodecError):
        SlotLru(slots)


def test_largest_dictionary_is_addressable_by_two_bytes():
    assert SlotLru(65536).slots == 65536


def test_encoder_dictionary_evicts_the_old_hash():
    d = EncoderDictionary(2)
    a, b, c = b"a" * 16, b"b" * 16, b"c" * 16
    assert (d.insert(a), d.insert(b)) == (0, 1)
    assert d.lookup(a) == 0  # a becomes most recent
    assert d.insert(c) == 1  # b was least recent
    assert d.lookup(b) is None
    assert (d.slot_hash(0), d.slot_hash(1), d.slot_hash(2)) == (a, c, None)
    assert d.lru.order() == [0, 1]
    d.reset()
    assert d.lookup(a) is None and d.slot_hash(0) is None


def test_decoder_dictionary_refs_only_filled_slots():
    d = DecoderDictionary(2)
    tile = np.full(768, 7, np.uint8)
    with pytest.raises(CodecError):
        d.ref(0)
    assert d.insert(tile) == 0
    assert d.ref(0).tobytes() == bytes([7]) * 768
    assert d.slot_tile(0) == bytes([7]) * 768 and d.slot_tile(1) is None
    with pytest.raises(CodecError):
        d.ref(1)
    d.reset()
    with pytest.raises(CodecError):
        d.ref(0)
