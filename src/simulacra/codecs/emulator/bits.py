"""Bit packing and succinct sorted-key tables for the emulator codec.

::

    keys (sorted, < 2^n) ──► Elias-Fano  ┐  whichever is smaller,
                         └─► bitmap 2^n  ┘  one kind byte says which
    values ──────────────► packed at the largest width, or indices into a
                           dictionary of distinct values (whichever is smaller)

    SparseTable.lookup(xs): membership bitmap (one byte gather per x; 2^n bits,
    built at load) -> only the hits do a binary search over the decoded keys
    and one gather from the values; 0 where x is not a key

The serialized form is succinct (close to the information content of the key
set, values packed or dictionary-coded); in memory the keys are decoded once
into a sorted ``uint64`` array plus the membership bitmap, so a batch of
lookups is a few vectorized passes and the binary search runs on hits only.
"""

from __future__ import annotations

import struct

import numpy as np

from simulacra.errors import CorruptArtifact, PayloadTooBig

__all__ = [
    "MAX_TABLE_ENTRIES",
    "pack_uint",
    "unpack_uint",
    "zigzag",
    "unzigzag",
    "encode_keys",
    "decode_keys",
    "SparseTable",
]

# Domains are at most 2^26 inputs, so a table never holds more entries than that.
MAX_TABLE_ENTRIES = 1 << 26
_CHUNK = 1 << 20
_U64 = np.uint64


def pack_uint(values: np.ndarray, width: int) -> bytes:
    """Pack unsigned ints (each < 2^width) into little-endian bit order."""
    values = np.ascontiguousarray(values, dtype=np.uint64)
    if width == 0 or values.size == 0:
        return b""
    if width in (8, 16, 32, 64):
        return values.astype(f"<u{width // 8}").tobytes()
    shifts = np.arange(width, dtype=np.uint64)
    parts = []
    # Chunks are a multiple of 8 values so every chunk ends on a byte boundary.
    for start in range(0, values.size, _CHUNK):
        v = values[start : start + _CHUNK]
        bits = ((v[:, None] >> shifts) & _U64(1)).astype(np.uint8)
        parts.append(np.packbits(bits.reshape(-1), bitorder="little").tobytes())
    return b"".join(parts)


def unpack_uint(data: bytes | memoryview, width: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_uint`; raises CorruptArtifact if ``data`` is short."""
    if count < 0 or count > MAX_TABLE_ENTRIES:
        raise PayloadTooBig(f"packed table of {count} entries is past the limit")
    if not 0 <= width <= 64:
        raise CorruptArtifact(f"bad packed width {width}")
    if width == 0 or count == 0:
        return np.zeros(count, dtype=np.uint64)
    need = (count * width + 7) // 8
    if len(data) < need:
        raise CorruptArtifact(f"packed table truncated: {len(data)} of {need} bytes")
    if width in (8, 16, 32, 64):
        return np.frombuffer(data, dtype=f"<u{width // 8}", count=count).astype(np.uint64)
    raw = np.frombuffer(data, dtype=np.uint8, count=need)
    weights = np.left_shift(np.uint64(1), np.arange(width, dtype=np.uint64))
    out = np.empty(count, dtype=np.uint64)
    for start in range(0, count, _CHUNK):
        stop = min(count, start + _CHUNK)
        b0, b1 = start * width // 8, (stop * width + 7) // 8
        bits = np.unpackbits(raw[b0:b1], bitorder="little")[: (stop - start) * width]
        out[start:stop] = bits.reshape(-1, width).astype(np.uint64) @ weights
    return out


def zigzag(values: np.ndarray) -> np.ndarray:
    """Signed int64 -> unsigned, small magnitudes to small codes."""
    v = np.asarray(values, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def unzigzag(codes: np.ndarray) -> np.ndarray:
    c = np.asarray(codes, dtype=np.uint64)
    return ((c >> _U64(1)).astype(np.int64)) ^ -((c & _U64(1)).astype(np.int64))


def _bitlen(v: int) -> int:
    return int(v).bit_length()


_KEYS_EF = 0
_KEYS_BITMAP = 1
_DICT = 0x80


def _ef_parts(keys: np.ndarray, universe: int) -> tuple[int, bytes, bytes]:
    n = keys.size
    low_bits = max(0, (universe // n).bit_length() - 1) if n else 0
    lows = keys & _U64((1 << low_bits) - 1)
    highs = (keys >> _U64(low_bits)).astype(np.int64)
    nbits = n + (universe >> low_bits) + 1
    unary = np.zeros(nbits, dtype=np.uint8)
    unary[highs + np.arange(n)] = 1
    return low_bits, pack_uint(lows, low_bits), np.packbits(unary, bitorder="little").tobytes()


def encode_keys(keys: np.ndarray, universe: int) -> bytes:
    """Sorted unique keys in [0, universe) -> bytes (Elias-Fano or bitmap)."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    n = keys.size
    head = struct.pack("<I", n)
    if n == 0:
        return bytes([_KEYS_EF, 0]) + head
    low_bits, lows, unary = _ef_parts(keys, universe)
    ef = bytes([_KEYS_EF, low_bits]) + head + lows + unary
    bitmap_len = (universe + 7) // 8
    if bitmap_len + 5 < len(ef):
        bm = np.zeros(universe, dtype=np.uint8)
        bm[keys.astype(np.int64)] = 1
        return bytes([_KEYS_BITMAP, 0]) + head + np.packbits(bm, bitorder="little").tobytes()
    return ef


def decode_keys(data: bytes | memoryview, universe: int) -> tuple[np.ndarray, int]:
    """Inverse of :func:`encode_keys`: (sorted keys, bytes consumed)."""
    data = memoryview(data)
    if len(data) < 6:
        raise CorruptArtifact("key table truncated")
    kind, low_bits = data[0], data[1]
    (n,) = struct.unpack_from("<I", data, 2)
    if n == 0:
        if kind != _KEYS_EF or low_bits != 0:
            raise CorruptArtifact("bad empty key table")
        return np.zeros(0, dtype=np.uint64), 6
    if n > min(universe, MAX_TABLE_ENTRIES):
        raise PayloadTooBig(f"key table of {n} entries is past the limit")
    pos = 6
    if kind == _KEYS_BITMAP:
        need = (universe + 7) // 8
        if len(data) - pos < need:
            raise CorruptArtifact("key bitmap truncated")
        bits = np.unpackbits(np.frombuffer(data[pos : pos + need], np.uint8), bitorder="little")
        keys = np.flatnonzero(bits[:universe]).astype(np.uint64)
        if keys.size != n:
            raise CorruptArtifact("key bitmap does not match its count")
        return keys, pos + need
    if kind != _KEYS_EF or low_bits > 63:
        raise CorruptArtifact(f"unknown key table kind {kind}")
    low_len = (n * low_bits + 7) // 8
    lows = unpack_uint(data[pos : pos + low_len], low_bits, n)
    pos += low_len
    nbits = n + (universe >> low_bits) + 1
    un_len = (nbits + 7) // 8
    if len(data) - pos < un_len:
        raise CorruptArtifact("key table truncated")
    unary = np.unpackbits(np.frombuffer(data[pos : pos + un_len], np.uint8), bitorder="little")
    ones = np.flatnonzero(unary[:nbits])
    if ones.size != n:
        raise CorruptArtifact("key table does not match its count")
    highs = (ones - np.arange(n)).astype(np.uint64)
    keys = (highs << _U64(low_bits)) | lows
    if (n > 1 and not bool(np.all(keys[1:] > keys[:-1]))) or int(keys[-1]) >= universe:
        raise CorruptArtifact("key table is not sorted inside its universe")
    return keys, pos + un_len


class SparseTable:
    """Sorted keys with one packed value each; ``lookup`` returns 0 for absent keys.

    Used for ``output_fixes`` and ``latent_fixes`` (values are XOR masks) and for
    ``patches`` (values replace the output; ``present`` says where).
    """

    __slots__ = ("keys", "values", "universe", "_bitmap")

    def __init__(self, keys: np.ndarray, values: np.ndarray, universe: int) -> None:
        keys = np.asarray(keys, dtype=np.uint64)
        values = np.asarray(values, dtype=np.uint64)
        if keys.shape != values.shape or keys.ndim != 1:
            raise ValueError("keys and values must be 1-d arrays of one length")
        if keys.size > MAX_TABLE_ENTRIES:
            raise PayloadTooBig(f"table of {keys.size} entries is past the limit")
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.values = values[order]
        self.universe = universe
        self._bitmap: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.keys.size)

    def _membership(self) -> np.ndarray:
        # One bit per input of the universe (at most 8 MiB): most queries are not
        # keys, and one byte gather tells them apart before any binary search.
        if self._bitmap is None:
            bm = np.zeros((self.universe + 7) // 8, dtype=np.uint8)
            k = self.keys.astype(np.intp)
            np.bitwise_or.at(bm, k >> 3, (1 << (k & 7)).astype(np.uint8))
            self._bitmap = bm
        return self._bitmap

    def find(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(present mask, index into keys; meaningful where present) for each x."""
        idx = np.zeros(xs.shape, dtype=np.int64)
        if self.keys.size == 0:
            return np.zeros(xs.shape, dtype=bool), idx
        bm = self._membership()
        xi = xs.astype(np.intp, copy=False)
        present = ((bm.take(xi >> 3) >> (xi & 7).astype(np.uint8)) & 1).astype(bool)
        hit = np.flatnonzero(present)
        if hit.size:
            idx[hit] = np.searchsorted(self.keys, xs[hit])
        return present, idx

    def lookup(self, xs: np.ndarray) -> np.ndarray:
        out = np.zeros(xs.shape, dtype=np.uint64)
        if self.keys.size == 0:
            return out
        present, idx = self.find(xs)
        hit = np.flatnonzero(present)
        out[hit] = self.values[idx[hit]]
        return out

    def to_bytes(self) -> bytes:
        """Keys, then values: packed directly, or as indices into a small dictionary.

        The value block starts with one byte: ``0..64`` is the direct width; ``0x80``
        means ``u32 entries | u8 entry width | entries | indices`` (each index
        ``bit_length(entries - 1)`` bits), used when few distinct values repeat.
        """
        keys = encode_keys(self.keys, self.universe)
        width = _bitlen(int(self.values.max())) if self.values.size else 0
        direct = bytes([width]) + pack_uint(self.values, width)
        if self.values.size > 1:
            book, index = np.unique(self.values, return_inverse=True)
            iw = _bitlen(book.size - 1)
            coded = (
                bytes([_DICT])
                + struct.pack("<I", book.size)
                + bytes([width])
                + pack_uint(book, width)
                + pack_uint(index.astype(np.uint64), iw)
            )
            if len(coded) < len(direct):
                return keys + coded
        return keys + direct

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, universe: int) -> SparseTable:
        data = memoryview(data)
        keys, pos = decode_keys(data, universe)
        if keys.size == 0:
            if pos != len(data) and not (len(data) == pos + 1 and data[pos] == 0):
                raise CorruptArtifact("trailing bytes after an empty table")
            return cls(keys, np.zeros(0, dtype=np.uint64), universe)
        if pos >= len(data):
            raise CorruptArtifact("value table truncated")
        width = data[pos]
        if width == _DICT:
            if len(data) < pos + 6:
                raise CorruptArtifact("value dictionary truncated")
            (entries,) = struct.unpack_from("<I", data, pos + 1)
            width = data[pos + 5]
            if not 1 <= entries <= keys.size or width > 64:
                raise CorruptArtifact("bad value dictionary")
            pos += 6
            book_len = (entries * width + 7) // 8
            iw = _bitlen(entries - 1)
            need = (keys.size * iw + 7) // 8
            if len(data) != pos + book_len + need:
                raise CorruptArtifact("value table has the wrong length")
            book = unpack_uint(data[pos : pos + book_len], width, entries)
            index = unpack_uint(data[pos + book_len :], iw, keys.size)
            if index.size and int(index.max()) >= entries:
                raise CorruptArtifact("value index outside its dictionary")
            return cls(keys, book[index.astype(np.intp)], universe)
        if width > 64:
            raise CorruptArtifact(f"bad value width {width}")
        need = (keys.size * width + 7) // 8
        if len(data) != pos + 1 + need:
            raise CorruptArtifact("value table has the wrong length")
        values = unpack_uint(data[pos + 1 :], width, keys.size)
        return cls(keys, values, universe)
