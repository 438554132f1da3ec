"""The tile dictionary: slots both sides assign identically, without negotiating.

::

    frame tiles, in order ─► non-REF: insert ─► lowest free slot, else the LRU slot (evicted)
                          └► REF s:   touch  ─► slot s becomes most recently used
    keyframe ─► reset: every slot free, use order empty

    server: EncoderDictionary   hash -> slot, slot -> hash   (16 B per slot, no pixels)
    client: DecoderDictionary   slot -> 768 pixel bytes

Slots fill lowest-first and are only freed all at once by a reset, so the
filled slots are always ``0 .. filled-1``: a REF to ``slot >= filled`` points
at an empty slot.
"""

from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np

from simulacra.errors import CodecError

from .tiles import TILE_BYTES

__all__ = ["MAX_SLOTS", "SlotLru", "EncoderDictionary", "DecoderDictionary"]

MAX_SLOTS = 1 << 16  # a REF carries a 2-byte slot number


class SlotLru:
    """Slot assignment and use order shared by both sides of the dictionary."""

    __slots__ = ("slots", "filled", "_order")

    def __init__(self, slots: int) -> None:
        if not isinstance(slots, int) or not 0 <= slots <= MAX_SLOTS:
            raise CodecError(f"dictionary_slots must be 0..{MAX_SLOTS}, got {slots!r}")
        self.slots = slots
        self.filled = 0
        self._order: OrderedDict[int, None] = OrderedDict()

    def reset(self) -> None:
        self.filled = 0
        self._order.clear()

    def copy(self) -> SlotLru:
        """An independent copy: same slots filled, same use order."""
        twin = SlotLru(self.slots)
        twin.filled = self.filled
        twin._order = self._order.copy()
        return twin

    def insert(self) -> int:
        """The slot a new tile goes to; it becomes most recently used."""
        if self.filled < self.slots:
            slot = self.filled
            self.filled += 1
        else:
            slot, _ = self._order.popitem(last=False)
        self._order[slot] = None
        return slot

    def touch(self, slot: int) -> None:
        self._order.move_to_end(slot)

    def order(self) -> list[int]:
        """Filled slots, least recently used first."""
        return list(self._order)

    @property
    def nbytes(self) -> int:
        return sys.getsizeof(self._order) + self.filled * 28  # int objects past the small cache


class EncoderDictionary:
    """Server side: which content hash sits in which slot."""

    __slots__ = ("lru", "_slot_of", "_hash_of")

    def __init__(self, slots: int) -> None:
        self.lru = SlotLru(slots)
        self._slot_of: dict[bytes, int] = {}
        self._hash_of: list[bytes | None] = []

    @property
    def slots(self) -> int:
        return self.lru.slots

    def reset(self) -> None:
        self.lru.reset()
        self._slot_of.clear()
        self._hash_of.clear()

    def copy(self) -> EncoderDictionary:
        """An independent copy; the hashes themselves are immutable and shared."""
        twin = EncoderDictionary.__new__(EncoderDictionary)
        twin.lru = self.lru.copy()
        twin._slot_of = self._slot_of.copy()
        twin._hash_of = self._hash_of.copy()
        return twin

    def lookup(self, key: bytes) -> int | None:
        """The slot holding ``key`` (marked most recently used), or None."""
        slot = self._slot_of.get(key)
        if slot is not None:
            self.lru.touch(slot)
        return slot

    def insert(self, key: bytes) -> int:
        slot = self.lru.insert()
        if slot == len(self._hash_of):
            self._hash_of.append(key)
        else:
            old = self._hash_of[slot]
            if old is not None:
                del self._slot_of[old]
            self._hash_of[slot] = key
        self._slot_of[key] = slot
        return slot

    def slot_hash(self, slot: int) -> bytes | None:
        """The content hash in ``slot``, or None when it is empty."""
        return self._hash_of[slot] if 0 <= slot < len(self._hash_of) else None

    @property
    def nbytes(self) -> int:
        # Hashes are 16-byte bytes objects (49 B each); both containers point at them.
        return (
            self.lru.nbytes
            + sys.getsizeof(self._slot_of)
            + sys.getsizeof(self._hash_of)
            + len(self._hash_of) * sys.getsizeof(b"\0" * 16)
        )


class DecoderDictionary:
    """Client side: the pixels of every filled slot."""

    __slots__ = ("lru", "pixels")

    def __init__(self, slots: int) -> None:
        self.lru = SlotLru(slots)
        # np.zeros maps lazily, so untouched slots cost no resident memory.
        self.pixels = np.zeros((slots, TILE_BYTES), dtype=np.uint8)

    @property
    def slots(self) -> int:
        return self.lru.slots

    def reset(self) -> None:
        self.lru.reset()

    def insert(self, tile: np.ndarray) -> int:
        slot = self.lru.insert()
        self.pixels[slot] = tile
        return slot

    def ref(self, slot: int) -> np.ndarray:
        """The pixels in ``slot`` (marked most recently used); CodecError if empty."""
        if not 0 <= slot < self.lru.filled:
            raise CodecError(f"REF to empty dictionary slot {slot}")
        self.lru.touch(slot)
        return self.pixels[slot]

    def slot_tile(self, slot: int) -> bytes | None:
        """The RAW bytes in ``slot``, or None when it is empty."""
        return self.pixels[slot].tobytes() if 0 <= slot < self.lru.filled else None
