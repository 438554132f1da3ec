"""Level tables: a shared, quasi-reduced multi-valued decision diagram over k-bit digits.

The input is read ``k`` bits at a time from the top, after an optional
reversal of its ``b``-bit blocks (2048's row puts tile 0 in the low nibble;
reading it first makes the diagram ten times smaller). The output is cut into
groups of ``g`` bits; every group walks the same shared tables, so equal
sub-functions of different groups are stored once::

    x ─► reverse b-bit blocks ─► x' = [ top t bits | digit L-1 | ... | digit 0 ]
    group j:  id = top[j][top bits]                       (one gather)
              id = level[L-1][id · 2^k + digit L-1]       (one gather per digit)
              ...
              value_j = level[0][id · 2^k + digit 0]      (g-bit leaf values)
    y = Σ value_j << (j · g)

Stored (``to_obj``): ``[block, g, ks, counts, blob]``, ``ks`` the digit widths
from the bottom, ``counts[i]`` the rows of level ``i``, ``blob`` one
little-endian bit stream: level 0's leaf values (``g`` bits each), then each
level's child ids (as wide as the level below needs), then the top ids.

Queries run on tables derived in memory (``_Fast``): adjacent levels merge into
wider digits while the tables stay under ``FAST_ENTRIES`` entries, so a query
costs one gather per group per merged digit; memory stays bounded whatever the
domain.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulacra.codecs.emulator.bdd import _pack_bits, _unpack_bits
from simulacra.errors import CorruptArtifact

__all__ = ["LevelTables", "fit_level_tables", "FAST_ENTRIES"]

# In-memory query tables of one model stay under this many entries (int64: 256 KiB).
FAST_ENTRIES = 1 << 15
_MAX_LEVELS = 32
_MAX_ROWS = 1 << 22
_CHUNK = 1 << 13


def _perm(d: int, block: int) -> list[int]:
    """Original bit index of each bit of x' (block 0: identity)."""
    if block == 0:
        return list(range(d))
    nb = d // block
    return [(nb - 1 - i // block) * block + i % block for i in range(d)]


def _runs(perm: list[int], lo: int, k: int) -> list[tuple[int, int, int]]:
    """(source bit, length, destination bit) runs assembling bits [lo, lo + k) of x'."""
    runs: list[tuple[int, int, int]] = []
    i = 0
    while i < k:
        j = i + 1
        while j < k and perm[lo + j] == perm[lo + j - 1] + 1:
            j += 1
        runs.append((perm[lo + i], j - i, i))
        i = j
    return runs


def _digit(x: np.ndarray, runs: list[tuple[int, int, int]]) -> np.ndarray:
    if not runs:
        return np.zeros_like(x)
    out: np.ndarray | None = None
    for src, length, dst in runs:
        part = (x >> src) & ((1 << length) - 1)
        if dst:
            part <<= dst
        out = part if out is None else out | part
    assert out is not None
    return out


def _digit_int(x: int, runs: list[tuple[int, int, int]]) -> int:
    v = 0
    for src, length, dst in runs:
        v |= ((x >> src) & ((1 << length) - 1)) << dst
    return v


def _dedupe(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows (sorted) and each row's index among them."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if rows.shape[1] == 1:
        uniq, inv = np.unique(rows[:, 0], return_inverse=True)
        return uniq[:, None], inv.reshape(-1)
    view = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1)
    _, first, inv = np.unique(view, return_index=True, return_inverse=True)
    return rows[first], inv.reshape(-1)


def _width(symbols: int) -> int:
    return max(0, symbols - 1).bit_length()


class LevelTables:
    """Exact level tables for a ``d``-bit -> ``w``-bit function."""

    __slots__ = ("d", "w", "block", "g", "ks", "levels", "top", "_fast")

    def __init__(
        self,
        d: int,
        w: int,
        block: int,
        g: int,
        ks: list[int],
        levels: list[np.ndarray],
        top: np.ndarray,
    ) -> None:
        # levels[i]: (rows_i, 2^ks[i]) int64; top: (groups, 2^t) int64.
        self.d, self.w, self.block, self.g, self.ks = d, w, block, g, ks
        self.levels, self.top = levels, top
        self._fast: _Fast | None = None

    @property
    def groups(self) -> int:
        return -(-self.w // self.g)

    @property
    def top_bits(self) -> int:
        return self.d - sum(self.ks)

    @classmethod
    def build(cls, y: np.ndarray, d: int, w: int, block: int, g: int, ks: list[int]) -> LevelTables:
        """Tables of ``y`` (``2^d`` values < ``2^w``) for one configuration."""
        ids = _split(_permuted(y, d, block), w, g)
        groups = ids.shape[0]
        levels: list[np.ndarray] = []
        for k in ks:
            table, inv = _dedupe(ids.reshape(-1, 1 << k))
            levels.append(table)
            ids = inv.reshape(groups, -1)
        return cls(d, w, block, g, list(ks), levels, ids)

    # --- serialization ------------------------------------------------------------------

    def _widths(self) -> list[int]:
        widths = [self.g] + [_width(len(t)) for t in self.levels]
        return widths

    def to_obj(self) -> list[Any]:
        widths = self._widths()
        values = [t.reshape(-1) for t in self.levels] + [self.top.reshape(-1)]
        bits = np.concatenate(
            [np.full(v.size, wd, dtype=np.int64) for v, wd in zip(values, widths, strict=True)]
        )
        blob = _pack_bits(np.concatenate(values), bits)
        return [self.block, self.g, list(self.ks), [len(t) for t in self.levels], blob]

    @classmethod
    def from_obj(cls, obj: Any, d: int, w: int) -> LevelTables:
        if not isinstance(obj, list) or len(obj) != 5:
            raise CorruptArtifact("malformed level tables")
        block, g, ks, counts, blob = obj
        if not (isinstance(block, int) and isinstance(g, int) and isinstance(blob, bytes)):
            raise CorruptArtifact("malformed level tables")
        if not (isinstance(ks, list) and isinstance(counts, list) and len(ks) == len(counts)):
            raise CorruptArtifact("malformed level tables")
        if not all(isinstance(v, int) for v in ks + counts) or len(ks) > _MAX_LEVELS:
            raise CorruptArtifact("malformed level tables")
        if block not in (0, 1, 2, 4, 8) or (block and d % block) or not 1 <= g <= w:
            raise CorruptArtifact("level tables have a bad block or group width")
        if any(k < 1 for k in ks) or sum(ks) > d or any(not 1 <= c <= _MAX_ROWS for c in counts):
            raise CorruptArtifact("level tables have bad digit widths or row counts")
        groups = -(-w // g)
        t = d - sum(ks)
        sizes = [c << k for c, k in zip(counts, ks, strict=True)] + [groups << t]
        widths = [g] + [_width(c) for c in counts]
        total_bits = sum(s * wd for s, wd in zip(sizes, widths, strict=True))
        if len(blob) != -(-total_bits // 8):
            raise CorruptArtifact("level tables length does not match their shape")
        bits = np.concatenate(
            [np.full(s, wd, dtype=np.int64) for s, wd in zip(sizes, widths, strict=True)]
        )
        flat = _unpack_bits(blob, bits)
        parts = np.split(flat, np.cumsum(sizes)[:-1])
        # Every id must name a row of the level below; leaves must fit the group.
        bounds = [1 << g] + list(counts)
        for part, bound in zip(parts, bounds, strict=True):
            if part.size and int(part.max()) >= bound:
                raise CorruptArtifact("level tables point past a level")
        levels = [p.reshape(c, 1 << k) for p, c, k in zip(parts[:-1], counts, ks, strict=True)]
        return cls(d, w, block, g, list(ks), levels, parts[-1].reshape(groups, 1 << t))

    # --- queries ------------------------------------------------------------------------

    def query(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u)
        # Inputs are below 2^d <= 2^26, so the uint64 bits read the same as int64.
        x = u.view(np.int64) if u.dtype == np.uint64 else u.astype(np.int64, copy=False)
        return self._accel().query(x.reshape(-1)).reshape(u.shape)

    def query_one(self, u: int) -> int:
        return self._accel().query_one(int(u))

    def _accel(self) -> _Fast:
        if self._fast is None:
            self._fast = _Fast(self)
        return self._fast


class _Fast:
    """Query tables: stored levels merged into wider digits under ``FAST_ENTRIES``.

    Ids are stored pre-multiplied by the next digit's span, so a step is
    ``id = table[id | digit]``: one OR and one gather.
    """

    __slots__ = ("groups", "g", "top", "top_runs", "steps", "_offsets", "_lists")

    def __init__(self, lt: LevelTables) -> None:
        levels = [t.copy() for t in lt.levels]
        ks = list(lt.ks)
        top = lt.top.copy()
        t = lt.top_bits
        # Greedy: merge the adjacent pair that adds the fewest entries while it fits.
        while levels:
            total = top.size + sum(x.size for x in levels)
            options: list[tuple[int, int]] = []
            for i in range(len(levels) - 1):
                grown = levels[i + 1].shape[0] << (ks[i] + ks[i + 1])
                options.append((grown - levels[i + 1].size - levels[i].size, i))
            grown = top.shape[0] << (t + ks[-1])
            options.append((grown - top.size - levels[-1].size, len(levels) - 1))
            delta, i = min(options)
            if total + delta > FAST_ENTRIES:
                break
            if i == len(levels) - 1:
                # The top absorbs the highest level.
                top = levels[i][top].reshape(top.shape[0], -1)
                t += ks[i]
                levels.pop()
                ks.pop()
            else:
                upper, lower = levels[i + 1], levels[i]
                levels[i] = lower[upper].reshape(upper.shape[0], -1)
                ks[i] += ks[i + 1]
                del levels[i + 1], ks[i + 1]
        perm = _perm(lt.d, lt.block)
        self.groups, self.g = top.shape[0], lt.g
        lows = np.concatenate([[0], np.cumsum(ks)]).astype(int).tolist()
        self.top_runs = _runs(perm, lows[-1], t)
        # Pre-multiply ids by the span of the digit they index next.
        if levels:
            top = top << ks[-1]
        offsets = (np.arange(self.groups, dtype=np.int64) << t)[:, None]
        self.top = top.reshape(-1)
        self.steps: list[tuple[list[tuple[int, int, int]], np.ndarray]] = []
        for i in range(len(levels) - 1, -1, -1):
            table = levels[i].reshape(-1)
            if i:
                table = table << ks[i - 1]
            self.steps.append((_runs(perm, lows[i], ks[i]), np.ascontiguousarray(table)))
        self._offsets = offsets
        self._lists: tuple[list[int], list[tuple[list[tuple[int, int, int]], list[int]]]] | None = (
            None
        )

    def query(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(x.size, dtype=np.int64)
        shifts = np.arange(self.groups, dtype=np.int64)[:, None] * self.g
        for s in range(0, x.size, _CHUNK):
            xc = x[s : s + _CHUNK]
            # Tables are checked on load, so every index is in range: "clip" skips the checks.
            cur = self.top.take(self._offsets + _digit(xc, self.top_runs), mode="clip")
            for runs, table in self.steps:
                cur |= _digit(xc, runs)
                cur = table.take(cur, mode="clip")
            if self.groups == 1:
                out[s : s + _CHUNK] = cur[0]
            else:
                cur <<= shifts
                np.bitwise_or.reduce(cur, axis=0, out=out[s : s + _CHUNK])
        return out.view(np.uint64)

    def query_one(self, x: int) -> int:
        if self._lists is None:
            self._lists = (self.top.tolist(), [(r, t.tolist()) for r, t in self.steps])
        top, steps = self._lists
        head = _digit_int(x, self.top_runs)
        span = len(top) // self.groups
        digits = [(_digit_int(x, r), t) for r, t in steps]
        y = 0
        for j in range(self.groups):
            cur = top[j * span + head]
            for digit, table in digits:
                cur = table[cur | digit]
            y |= cur << (j * self.g)
        return y


def _permuted(y: np.ndarray, d: int, block: int) -> np.ndarray:
    perm = _perm(d, block)
    xs = np.arange(1 << d, dtype=np.int64)
    src = np.zeros(1 << d, dtype=np.int64)
    for i, p in enumerate(perm):
        src |= ((xs >> i) & 1) << p
    return np.asarray(y, dtype=np.uint64)[src]


def _split(yp: np.ndarray, w: int, g: int) -> np.ndarray:
    mask = np.uint64((1 << g) - 1)
    return np.stack([((yp >> np.uint64(j * g)) & mask).astype(np.int64) for j in range(-(-w // g))])


def fit_level_tables(
    y: np.ndarray, d: int, w: int, budget_bits: float | None = None
) -> tuple[LevelTables, int] | None:
    """The configuration with the fewest stored bits, and those bits.

    Per (block, group width, digit width) the levels are built bottom-up once;
    every height at which the rest could become the top table is costed on the way.
    """
    if d < 2 or d > 20:
        return None
    # Larger blocks first: on a tie they keep digits contiguous, so queries stay cheap.
    blocks = [0] + [b for b in (8, 4, 2, 1) if b < d and d % b == 0]
    gs = sorted({g for g in (w, 8, 4, 1) if g <= w}, reverse=True)
    best: tuple[int, int, int, list[int], list[np.ndarray], np.ndarray] | None = None
    bound = float("inf") if budget_bits is None else budget_bits
    for block in blocks:
        yp = _permuted(y, d, block)
        for g in gs:
            base = _split(yp, w, g)
            groups = base.shape[0]
            for k in (1, 2, 4):
                ids = base
                levels: list[np.ndarray] = []
                ks: list[int] = []
                stored = 0  # bits of the levels built so far
                width = g  # bits of one entry of the next table up
                while sum(ks) + k < d:
                    table, inv = _dedupe(ids.reshape(-1, 1 << k))
                    stored += table.size * width
                    if stored >= bound:
                        break
                    levels.append(table)
                    ks.append(k)
                    ids = inv.reshape(groups, -1)
                    width = _width(len(table))
                    total = stored + ids.size * width
                    if total < bound:
                        bound = total
                        best = (total, block, g, list(ks), list(levels), ids)
    if best is None:
        return None
    total, block, g, ks, levels, top = best
    return LevelTables(d, w, block, g, ks, levels, top), total
