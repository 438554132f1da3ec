"""A bounded LRU of tile encodings shared by every client of a server.

::

    tile hash ─► cache ─hit──► (encoding, data)
                   │
                   └─miss─► encode_tile(RAW) ─► store, evict the least recently used

Many viewers of one app session see the same tiles; each unique tile is
encoded once, not once per viewer. Frame encoders may run in executor
threads, so the cache takes a lock around its bookkeeping (never around the
encoding itself).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from simulacra.errors import CodecError

from .encodings import encode_tile

__all__ = ["TileEncodeCache"]

# Per entry besides the data: the 16-byte key object, the tuple, the OrderedDict node.
_ENTRY_OVERHEAD = 49 + 56 + 104


class TileEncodeCache:
    """Content hash -> ``(encoding id, data)``, at most ``max_entries`` of them.

    ``hits`` and ``misses`` count lookups; ``len(cache)`` is the number held.
    """

    def __init__(self, max_entries: int = 65536) -> None:
        if not isinstance(max_entries, int) or max_entries < 1:
            raise CodecError(f"max_entries must be a positive int, got {max_entries!r}")
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[bytes, tuple[int, bytes]] = OrderedDict()
        self._data_bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the entries."""
        return self._data_bytes + len(self._entries) * _ENTRY_OVERHEAD

    def get(self, key: bytes, tile: bytes) -> tuple[int, bytes]:
        """The encoding of ``tile`` whose content hash is ``key``, encoding it on a miss."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
        encoded = encode_tile(tile)
        with self._lock:
            if key not in self._entries:
                self._entries[key] = encoded
                self._data_bytes += len(encoded[1])
                if len(self._entries) > self.max_entries:
                    _, (_, dropped) = self._entries.popitem(last=False)
                    self._data_bytes -= len(dropped)
        return encoded

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._data_bytes = 0
