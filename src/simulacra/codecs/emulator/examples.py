"""The visible benchmark suite: program segments with known classical baselines.

Each function is given twice: vectorized (``np.ndarray[uint64] -> np.ndarray[uint64]``,
what ``compile_emulator(..., vectorized=True)`` and the benchmark use) and as plain
Python on one int (``*_py``, the "original Python function" the benchmark times)::

    x (n bits) ──► fn(xs) ──► y (m bits)         SUITE[name] = SuiteFunction(fn, n, m, fn_py)

Definitions follow ``shared/docs/BASELINES.md``; conventions the document leaves
open, chosen so that its baseline figures reproduce:

- ``row2048``: tile ``i`` (0 = leftmost) is nibble ``i`` counted from the least
  significant end; a nibble is a tile exponent (0 = empty). Tiles slide towards
  tile 0 and equal neighbours merge once per move; two 15s do not merge (15 is
  the largest exponent a nibble holds).
- ``crc16``: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final
  xor) of the two bytes ``x >> 8``, ``x & 0xFF``.
- ``random16``: ``np.random.Generator(np.random.PCG64(0)).integers(0, 2**16, 2**16)``,
  a random table (not a permutation). Its BDD is 508,706 bytes against the
  documented 508,246 (+0.09%): the document's generator is unknown, and every common
  one tried (PCG64 and MT19937 integers, permutations, bytes; Python's random) lands
  within 0.2%. Every other figure of the table reproduces exactly.
- ``sin16``: Python's ``round`` (half to even) of ``(sin(2πx/65536) + 1) · 2047.5``.
- ``ltl5x5``: bit ``r·5 + c`` is the cell at row ``r``, column ``c``; the centre is bit 12;
  the count is over the 24 neighbours (the centre excluded). A dead centre is born
  with 7..9 live neighbours, a live one survives with 6..10.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "SuiteFunction",
    "SUITE",
    "row2048",
    "row2048_py",
    "popcount16",
    "popcount16_py",
    "crc16",
    "crc16_py",
    "crc16_ccitt",
    "mul8x8",
    "mul8x8_py",
    "random16",
    "random16_py",
    "sin16",
    "sin16_py",
    "aes_sbox",
    "aes_sbox_py",
    "AES_SBOX",
    "ltl5x5",
    "ltl5x5_py",
    "truth_table",
]

VectorFn = Callable[[np.ndarray], np.ndarray]
ScalarFn = Callable[[int], int]

_U64 = np.uint64


def _as_u64(xs: np.ndarray) -> np.ndarray:
    return np.asarray(xs).astype(np.uint64, copy=False)


# --- row2048 -----------------------------------------------------------------


def row2048_py(x: int) -> int:
    """Move a 2048 row of four nibble tiles left (tile 0 = low nibble)."""
    tiles = [t for t in (x & 15, (x >> 4) & 15, (x >> 8) & 15, (x >> 12) & 15) if t]
    y = shift = i = 0
    n = len(tiles)
    while i < n:
        t = tiles[i]
        if i + 1 < n and tiles[i + 1] == t and t < 15:
            t += 1
            i += 2
        else:
            i += 1
        y |= t << shift
        shift += 4
    return y


def row2048(xs: np.ndarray) -> np.ndarray:
    """Vectorized :func:`row2048_py`: a slide-and-merge on nibble arrays."""
    xs = _as_u64(xs) & _U64(0xFFFF)
    tiles = [((xs >> _U64(4 * i)) & _U64(0xF)).astype(np.int64) for i in range(4)]
    # Compact non-zero tiles to the left, then merge left to right once.
    cols = np.stack(tiles, axis=-1)
    order = np.argsort(cols == 0, axis=-1, kind="stable")
    cols = np.take_along_axis(cols, order, axis=-1)
    out = np.zeros_like(cols)
    pos = np.zeros(cols.shape[:-1], dtype=np.int64)
    skip = np.zeros(cols.shape[:-1], dtype=bool)
    for i in range(4):
        cur = cols[..., i]
        nxt = cols[..., i + 1] if i < 3 else np.zeros_like(cur)
        take = (cur != 0) & ~skip
        merge = take & (nxt == cur) & (cur < 15)
        val = np.where(merge, cur + 1, cur)
        np.put_along_axis(out, pos[..., None], np.where(take, val, 0)[..., None], axis=-1)
        pos = pos + take
        skip = merge
    y = np.zeros(cols.shape[:-1], dtype=np.uint64)
    for i in range(4):
        y |= out[..., i].astype(np.uint64) << _U64(4 * i)
    return y


# --- popcount16 --------------------------------------------------------------


def popcount16_py(x: int) -> int:
    return (x & 0xFFFF).bit_count()


def popcount16(xs: np.ndarray) -> np.ndarray:
    xs = _as_u64(xs) & _U64(0xFFFF)
    return np.bitwise_count(xs).astype(np.uint64)


# --- crc16 -------------------------------------------------------------------


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (bytewise reference)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def crc16_py(x: int) -> int:
    return crc16_ccitt(bytes(((x >> 8) & 0xFF, x & 0xFF)))


def crc16(xs: np.ndarray) -> np.ndarray:
    xs = _as_u64(xs) & _U64(0xFFFF)
    crc = np.full(xs.shape, 0xFFFF, dtype=np.uint64)
    for byte in (xs >> _U64(8), xs & _U64(0xFF)):
        crc ^= byte << _U64(8)
        for _ in range(8):
            top = (crc >> _U64(15)) & _U64(1)
            crc = ((crc << _U64(1)) ^ (top * _U64(0x1021))) & _U64(0xFFFF)
    return crc


# --- mul8x8 ------------------------------------------------------------------


def mul8x8_py(x: int) -> int:
    return ((x >> 8) & 0xFF) * (x & 0xFF)


def mul8x8(xs: np.ndarray) -> np.ndarray:
    xs = _as_u64(xs)
    return ((xs >> _U64(8)) & _U64(0xFF)) * (xs & _U64(0xFF))


# --- random16 ----------------------------------------------------------------

_RANDOM16 = np.random.Generator(np.random.PCG64(0)).integers(0, 1 << 16, 1 << 16, dtype=np.uint64)
_RANDOM16.setflags(write=False)
_RANDOM16_LIST = _RANDOM16.tolist()


def random16_py(x: int) -> int:
    return int(_RANDOM16_LIST[x & 0xFFFF])


def random16(xs: np.ndarray) -> np.ndarray:
    return _RANDOM16[(_as_u64(xs) & _U64(0xFFFF)).astype(np.intp)]


# --- sin16 -------------------------------------------------------------------


def sin16_py(x: int) -> int:
    return round((math.sin(2 * math.pi * (x & 0xFFFF) / 65536) + 1) * 2047.5)


def sin16(xs: np.ndarray) -> np.ndarray:
    xs = _as_u64(xs) & _U64(0xFFFF)
    # Evaluated with math.sin per distinct input: np.sin may differ from libm in the
    # last ulp, and this table is the definition, so both paths must agree exactly.
    table = _sin16_table()
    return table[xs.astype(np.intp)]


_SIN16: np.ndarray | None = None


def _sin16_table() -> np.ndarray:
    global _SIN16
    if _SIN16 is None:
        t = np.array([sin16_py(x) for x in range(1 << 16)], dtype=np.uint64)
        t.setflags(write=False)
        _SIN16 = t
    return _SIN16


# --- aes_sbox ----------------------------------------------------------------


def _gf_mul(a: int, b: int) -> int:
    r = 0
    while b:
        if b & 1:
            r ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11B
        b >>= 1
    return r


def _aes_sbox_entry(x: int) -> int:
    inv = 0
    if x:
        inv = next(y for y in range(1, 256) if _gf_mul(x, y) == 1)
    s = inv
    for k in range(1, 5):
        s ^= ((inv << k) | (inv >> (8 - k))) & 0xFF
    return s ^ 0x63


AES_SBOX: tuple[int, ...] = tuple(_aes_sbox_entry(x) for x in range(256))
_AES_SBOX_NP = np.array(AES_SBOX, dtype=np.uint64)
_AES_SBOX_NP.setflags(write=False)


def aes_sbox_py(x: int) -> int:
    return AES_SBOX[x & 0xFF]


def aes_sbox(xs: np.ndarray) -> np.ndarray:
    return _AES_SBOX_NP[(_as_u64(xs) & _U64(0xFF)).astype(np.intp)]


# --- ltl5x5 ------------------------------------------------------------------

_CENTRE = 12
_NEIGHBOUR_MASK = ((1 << 25) - 1) & ~(1 << _CENTRE)


def ltl5x5_py(x: int) -> int:
    count = (x & _NEIGHBOUR_MASK).bit_count()
    if (x >> _CENTRE) & 1:
        return int(6 <= count <= 10)
    return int(7 <= count <= 9)


def ltl5x5(xs: np.ndarray) -> np.ndarray:
    xs = _as_u64(xs)
    count = np.bitwise_count(xs & _U64(_NEIGHBOUR_MASK))
    alive = ((xs >> _U64(_CENTRE)) & _U64(1)).astype(bool)
    survive = (count >= 6) & (count <= 10)
    born = (count >= 7) & (count <= 9)
    return np.where(alive, survive, born).astype(np.uint64)


# --- registry ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SuiteFunction:
    """One suite entry: the vectorized function, its widths and a scalar twin."""

    name: str
    fn: VectorFn = field(repr=False)
    in_bits: int
    out_bits: int
    fn_py: ScalarFn = field(repr=False)
    description: str = ""

    def __iter__(self) -> Iterator[Any]:
        # Unpacks as (fn, in_bits, out_bits), the shape the suite registry promises.
        return iter((self.fn, self.in_bits, self.out_bits))


SUITE: dict[str, SuiteFunction] = {
    s.name: s
    for s in (
        SuiteFunction("row2048", row2048, 16, 16, row2048_py, "2048 row move left, 4 nibbles"),
        SuiteFunction("popcount16", popcount16, 16, 5, popcount16_py, "population count"),
        SuiteFunction("crc16", crc16, 16, 16, crc16_py, "CRC-16/CCITT-FALSE of 2 bytes"),
        SuiteFunction("mul8x8", mul8x8, 16, 16, mul8x8_py, "high byte times low byte"),
        SuiteFunction("random16", random16, 16, 16, random16_py, "random table (control)"),
        SuiteFunction("sin16", sin16, 16, 12, sin16_py, "12-bit sine"),
        SuiteFunction("aes_sbox", aes_sbox, 8, 8, aes_sbox_py, "AES S-box"),
        SuiteFunction("ltl5x5", ltl5x5, 25, 1, ltl5x5_py, "Larger-than-Life 5x5 rule"),
    )
}


def truth_table(fn: VectorFn, in_bits: int, *, chunk: int = 1 << 22) -> np.ndarray:
    """Every output of a vectorized ``fn`` over ``0 .. 2**in_bits - 1`` as uint64."""
    n = 1 << in_bits
    out = np.empty(n, dtype=np.uint64)
    for start in range(0, n, chunk):
        xs = np.arange(start, min(n, start + chunk), dtype=np.uint64)
        out[start : start + len(xs)] = fn(xs)
    return out
