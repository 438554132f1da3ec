"""Shared reduced ordered binary decision diagrams over every output bit of a truth table.

Natural variable order (the input's most significant bit at the root), no
complement edges. Built bottom-up with numpy, one level at a time: the table's
bits are paired into (lo, hi) children, equal pairs collapse to the child, and
the remaining pairs are deduplicated into the level's new nodes::

    level n-1 (tests x bit 0):  t[0] t[1] | t[2] t[3] | ...     pairs of terminals
                                   └─ a ─┘     └─ b ─┘
    level n-2 (tests x bit 1):      (a, b) | ...                 pairs of node ids
      ...                                                        (lo == hi: no node)
    level 0   (tests x bit n-1):   root[j] for output bit j

Node ids: 0 and 1 are the terminals, internal nodes follow level by level from
the bottom, so every child id is smaller than its parent's, and a child of a
node testing bit ``v`` is one of the ``base[v] = 2 + count[0] + ... + count[v-1]``
ids below that level. The serialization (``to_bytes``) stores per-level node
counts and one little-endian bit stream of child pointers, each only as wide as
its level needs::

    b"BD" | version u8 = 2 | in_bits u8 | out_bits u8 | count[v] LEB128, v = 0 .. in_bits-1
          | for v = 0 .. in_bits-1: (lo, hi) of each node testing bit v, bit_length(base[v] - 1) bits
          | root of each output bit, bit_length(base[in_bits] - 1) bits        (zero-padded to a byte)

Queries use lookup tables derived in memory (see ``_Accelerator``): one gather for
the top input bits and one per segment of levels below.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from simulacra.errors import CorruptArtifact, PayloadTooBig

__all__ = ["BDD", "MAX_BDD_BYTES"]

MAX_BDD_BYTES = 1 << 30
_MAGIC = b"BD"
_VERSION = 2
_HEADER = struct.Struct("<2sBBB")
# A dense bitmap over (lo, hi) combinations beats sorting while it stays this many
# times the number of keys (or tiny).
_DENSE_FACTOR = 4
_DENSE_MIN = 1 << 16


def _pack_bits(values: np.ndarray, widths: np.ndarray | int, *, chunk: int = 1 << 20) -> bytes:
    """Little-endian bit stream of unsigned ``values``, ``widths`` bits each (<= 56)."""
    v = np.asarray(values).astype(np.uint64)
    w = np.broadcast_to(np.asarray(widths, dtype=np.int64), v.shape)
    parts: list[bytes] = []
    carry = np.zeros(0, dtype=np.uint8)  # bits left over from the previous chunk (< 8)
    for start in range(0, len(v), chunk):
        cv, cw = v[start : start + chunk], w[start : start + chunk]
        top = int(cw.max()) if len(cw) else 0
        if top == 0:
            continue
        planes = (cv[:, None] >> np.arange(top, dtype=np.uint64)) & np.uint64(1)
        bits = planes.astype(np.uint8)[np.arange(top) < cw[:, None]]
        bits = np.concatenate([carry, bits])
        whole = len(bits) // 8 * 8
        parts.append(np.packbits(bits[:whole], bitorder="little").tobytes())
        carry = bits[whole:]
    if len(carry):
        parts.append(np.packbits(carry, bitorder="little").tobytes())
    return b"".join(parts)


def _unpack_bits(data: bytes, widths: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_pack_bits` for the same ``widths``: eight byte gathers each."""
    widths = np.asarray(widths, dtype=np.int64)
    count = len(widths)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    raw = np.frombuffer(bytes(data) + bytes(8), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum(widths)[:-1]])
    first = offsets >> 3
    word = np.zeros(count, dtype=np.uint64)
    for k in range(8):
        word |= raw[first + k].astype(np.uint64) << np.uint64(8 * k)
    word >>= (offsets & 7).astype(np.uint64)
    mask = (np.uint64(1) << widths.astype(np.uint64)) - np.uint64(1)
    return (word & mask).astype(np.int64)


def _leb128(values: list[int]) -> bytes:
    out = bytearray()
    for value in values:
        while True:
            byte = value & 0x7F
            value >>= 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                break
    return bytes(out)


def _read_leb128(data: bytes, offset: int, count: int) -> tuple[list[int], int]:
    values = []
    for _ in range(count):
        value = shift = 0
        while True:
            if offset >= len(data):
                raise CorruptArtifact("BDD truncated: level counts incomplete")
            byte = data[offset]
            offset += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if shift >= 35:
                raise CorruptArtifact("BDD level count too large")
        values.append(value)
    return values, offset


def _bits_for(symbols: int) -> int:
    """Bits to tell ``symbols`` values apart (0 for one)."""
    return max(0, symbols - 1).bit_length()


class BDD:
    """A shared ROBDD: ``lo``/``hi`` children per node, one root per output bit."""

    __slots__ = ("in_bits", "out_bits", "lo", "hi", "var", "roots", "level_counts", "_jump")

    def __init__(
        self,
        in_bits: int,
        out_bits: int,
        lo: np.ndarray,
        hi: np.ndarray,
        level_counts: np.ndarray,
        roots: np.ndarray,
    ) -> None:
        # lo/hi/var cover all ids, terminals included (they point to themselves).
        self.in_bits = in_bits
        self.out_bits = out_bits
        self.lo = lo
        self.hi = hi
        self.level_counts = level_counts
        self.roots = roots
        var = np.zeros(len(lo), dtype=np.int64)
        start = 2
        # level_counts[b] nodes test input bit b, stored from bit 0 (bottom) upwards.
        for b, c in enumerate(level_counts.tolist()):
            var[start : start + c] = b
            start += c
        self.var = var
        self._jump: _Accelerator | None = None

    # --- construction ---------------------------------------------------

    @classmethod
    def from_truth_table(cls, table: np.ndarray, in_bits: int, out_bits: int) -> BDD:
        """Build the shared ROBDD of ``table`` (uint64, ``2**in_bits`` entries)."""
        if not 0 <= in_bits <= 32:
            raise ValueError(f"in_bits must be 0..32, got {in_bits}")
        if not 1 <= out_bits <= 64:
            raise ValueError(f"out_bits must be 1..64, got {out_bits}")
        table = np.asarray(table)
        if table.shape != (1 << in_bits,):
            raise ValueError(f"table must have 2**{in_bits} entries, got shape {table.shape}")
        table = table.astype(np.uint64, copy=False)
        n = 1 << in_bits
        next_id = 2
        los: list[np.ndarray] = [np.array([0, 1], dtype=np.int64)]
        his: list[np.ndarray] = [np.array([0, 1], dtype=np.int64)]
        counts: list[int] = []

        def reduce(ids: np.ndarray, levels: int) -> np.ndarray:
            nonlocal next_id
            for _ in range(levels):
                ids, nodes_lo, nodes_hi = cls._reduce_level(ids[0::2], ids[1::2], next_id)
                counts.append(len(nodes_lo))
                los.append(nodes_lo)
                his.append(nodes_hi)
                next_id += len(nodes_lo)
            return ids

        one = np.uint64(1)
        if in_bits >= 3:
            # The bottom three levels at once: each output bit packs into one byte per 8
            # consecutive inputs, and only the distinct bytes (<= 256) are reduced. The
            # nodes and their numbering are those of reducing the whole bit array.
            packed = np.empty((out_bits, n >> 3), dtype=np.uint8)
            for j in range(out_bits):
                column = ((table >> np.uint64(j)) & one).astype(np.uint8)
                packed[j] = np.packbits(column, bitorder="little")
            patterns = np.unique(packed)
            bits = np.unpackbits(patterns[:, None], axis=1, bitorder="little").reshape(-1)
            lookup = np.zeros(256, dtype=np.int64)
            lookup[patterns] = reduce(bits, 3)
            ids_flat = lookup.astype(np.int32)[packed.reshape(-1)]
            del packed
            ids_flat = reduce(ids_flat, in_bits - 3)
        else:
            bits = np.empty((out_bits, n), dtype=np.uint8)
            for j in range(out_bits):
                bits[j] = (table >> np.uint64(j)) & one
            ids_flat = reduce(bits.reshape(-1), in_bits)
        return cls(
            in_bits,
            out_bits,
            np.concatenate(los),
            np.concatenate(his),
            np.array(counts, dtype=np.int64),
            ids_flat.astype(np.int64),
        )

    @staticmethod
    def _reduce_level(
        lo: np.ndarray, hi: np.ndarray, next_id: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ids above one level, and the (lo, hi) of the nodes it creates."""
        split = lo != hi
        lo_s = lo[split]
        hi_s = hi[split]
        bound = next_id + len(lo_s)
        out = lo.astype(np.int32 if bound < 1 << 31 else np.int64)
        if len(lo_s) == 0:
            return out, np.empty(0, np.int64), np.empty(0, np.int64)
        base = int(max(lo_s.max(), hi_s.max())) + 1
        # The smallest key type that holds lo * base + hi keeps big levels affordable.
        kd = np.uint32 if base * base < 1 << 32 else np.uint64
        keys = lo_s.astype(kd) * kd(base) + hi_s.astype(kd)
        del lo_s, hi_s
        if base * base <= max(_DENSE_MIN, _DENSE_FACTOR * len(keys)):
            present = np.zeros(base * base, dtype=bool)
            present[keys] = True
            uniq = np.flatnonzero(present)
            rank = np.cumsum(present, dtype=np.int64 if len(uniq) >= 1 << 31 else np.int32)
            inverse = rank[keys] - 1
            del present, rank
        else:
            uniq, inverse = np.unique(keys, return_inverse=True)
        out[split] = inverse.astype(out.dtype) + next_id
        uniq = uniq.astype(np.int64)
        return out, uniq // base, uniq % base

    # --- measures -------------------------------------------------------

    @property
    def node_count(self) -> int:
        """Internal (decision) nodes; the two terminals are not counted."""
        return int(self.level_counts.sum())

    def baseline_bytes(self) -> int:
        """BASELINES.md's BDD size: ``ceil(N · (2⌈log2 N⌉ + ⌈log2 n⌉) / 8)``, N = nodes."""
        nodes = self.node_count
        if nodes == 0:
            return 0
        ptr = math.ceil(math.log2(nodes)) if nodes > 1 else 0
        var = math.ceil(math.log2(self.in_bits)) if self.in_bits > 1 else 0
        return -(-nodes * (2 * ptr + var) // 8)

    def _pointer_widths(self) -> np.ndarray:
        """Width of each serialized pointer: lo, hi per node level by level, then roots."""
        base = 2 + np.concatenate([[0], np.cumsum(self.level_counts)]).astype(np.int64)
        level_width = np.array([_bits_for(int(b)) for b in base], dtype=np.int64)
        per_node = np.repeat(level_width[:-1], self.level_counts)
        return np.concatenate(
            [np.repeat(per_node, 2), np.full(self.out_bits, level_width[-1], dtype=np.int64)]
        )

    @property
    def nbytes(self) -> int:
        """Length of :meth:`to_bytes`."""
        bits = int(self._pointer_widths().sum())
        counts = _leb128([int(c) for c in self.level_counts])
        return _HEADER.size + len(counts) + -(-bits // 8)

    # --- serialization --------------------------------------------------

    def to_bytes(self) -> bytes:
        nodes = self.node_count
        pointers = np.empty(2 * nodes + self.out_bits, dtype=np.int64)
        pointers[0 : 2 * nodes : 2] = self.lo[2:]
        pointers[1 : 2 * nodes : 2] = self.hi[2:]
        pointers[2 * nodes :] = self.roots
        return (
            _HEADER.pack(_MAGIC, _VERSION, self.in_bits, self.out_bits)
            + _leb128([int(c) for c in self.level_counts])
            + _pack_bits(pointers, self._pointer_widths())
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, max_bytes: int = MAX_BDD_BYTES) -> BDD:
        """Parse and check :meth:`to_bytes` output; ``CorruptArtifact`` on bad input."""
        data = bytes(data)
        if len(data) > max_bytes:
            raise PayloadTooBig(f"BDD of {len(data)} bytes is over the {max_bytes}-byte limit")
        if len(data) < _HEADER.size:
            raise CorruptArtifact("BDD truncated: header incomplete")
        magic, version, in_bits, out_bits = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise CorruptArtifact("not a BDD: bad magic")
        if version != _VERSION:
            raise CorruptArtifact(f"BDD format version {version}, this build reads {_VERSION}")
        if in_bits > 32 or not 1 <= out_bits <= 64:
            raise CorruptArtifact(f"BDD header invalid: in_bits={in_bits} out_bits={out_bits}")
        counts_list, off = _read_leb128(data, _HEADER.size, in_bits)
        counts = np.array(counts_list, dtype=np.int64)
        nodes = int(counts.sum())
        # Every node takes at least two bits, so a count past this cannot fit the data.
        if nodes > 4 * len(data):
            raise CorruptArtifact(f"BDD claims {nodes} nodes in {len(data)} bytes")
        shell = cls(
            in_bits,
            out_bits,
            np.zeros(nodes + 2, dtype=np.int64),
            np.zeros(nodes + 2, dtype=np.int64),
            counts,
            np.zeros(out_bits, dtype=np.int64),
        )
        widths = shell._pointer_widths()
        need = -(-int(widths.sum()) // 8)
        if len(data) != off + need:
            raise CorruptArtifact(
                f"BDD length mismatch: {len(data)} bytes, header implies {off + need}"
            )
        ptrs = _unpack_bits(data[off:], widths)
        shell.lo[2:] = ptrs[0 : 2 * nodes : 2]
        shell.hi[2:] = ptrs[1 : 2 * nodes : 2]
        shell.lo[1] = shell.hi[1] = 1
        shell.roots = ptrs[2 * nodes :]
        shell._check()
        return shell

    def _check(self) -> None:
        """Ordered, reduced and in range: a walk always ends on a terminal."""
        total = len(self.lo)
        if total == 2:
            if (self.roots > 1).any():
                raise CorruptArtifact("BDD root points past the node table")
            return
        ids = np.arange(2, total)
        lo, hi, var = self.lo[2:], self.hi[2:], self.var[2:]
        if (lo >= total).any() or (hi >= total).any() or (self.roots >= total).any():
            raise CorruptArtifact("BDD pointer past the node table")
        if (lo == hi).any():
            raise CorruptArtifact("BDD not reduced: a node with equal children")
        # A child tests a lower input bit than its parent (or is a terminal).
        for child in (lo, hi):
            inner = child >= 2
            if (child >= ids).any() or (self.var[child[inner]] >= var[inner]).any():
                raise CorruptArtifact("BDD not ordered: a child at or above its parent")

    # --- queries --------------------------------------------------------

    def query(self, xs: np.ndarray, *, chunk: int = 1 << 15) -> np.ndarray:
        """Outputs (uint64) for inputs ``xs``; bits above ``in_bits`` are ignored."""
        xs = np.asarray(xs).astype(np.uint64, copy=False)
        flat = xs.reshape(-1)
        acc = self._accelerator()
        if len(flat) <= _SCALAR_BATCH:
            # numpy's per-call overhead dominates tiny batches; plain ints are faster.
            ys = [acc.query_one(x) for x in flat.tolist()]
            return np.array(ys, dtype=np.uint64).reshape(xs.shape)
        out = np.empty(len(flat), dtype=np.uint64)
        for start in range(0, len(flat), chunk):
            out[start : start + chunk] = acc.query(flat[start : start + chunk])
        return out.reshape(xs.shape)

    def query_one(self, x: int) -> int:
        """The output for one input, with plain Python ints."""
        return self._accelerator().query_one(int(x))

    def _accelerator(self) -> _Accelerator:
        if self._jump is None:
            self._jump = _Accelerator(self)
        return self._jump

    def __repr__(self) -> str:
        return f"BDD(in_bits={self.in_bits}, out_bits={self.out_bits}, nodes={self.node_count})"


class _Accelerator:
    """In-memory query tables derived from a BDD (never serialized).

    Levels are cut into a top slice of ``t`` bits and segments below it::

        x: [ top t bits | segment bits | ... | segment bits ]
             top[j << t | b]        -> node for output j after the top slice
             table[u << s | b]      -> node after reading the segment's s bits

    Node ids grow bottom-up, so the nodes left below level ``h`` are exactly the
    ids under ``2 + count[0:h]``; a segment's table covers only those. Each step is
    one gather per output bit instead of one per level. The tables stay near
    2^16 (top) and 2^20 (each segment) entries, so memory follows the diagram's
    size, never the truth table's.
    """

    __slots__ = ("in_bits", "out_bits", "top_bits", "top", "segments", "_lists")

    def __init__(self, bdd: BDD) -> None:
        var = bdd.var.copy()
        var[:2] = -1
        n = self.in_bits = bdd.in_bits
        self.out_bits = bdd.out_bits
        t = n
        while t > 0 and bdd.out_bits << t > _TOP_ENTRIES:
            t -= 1
        self.top_bits = t
        roots = bdd.roots.astype(np.int64)
        top = _walk(bdd, var, roots, n - 1, t).astype(np.int32)
        # One contiguous row per output bit: queries walk one output bit at a time.
        self.top = top.reshape(bdd.out_bits, 1 << t)
        below = np.concatenate([[2], 2 + np.cumsum(bdd.level_counts)]).astype(np.int64)
        self.segments: list[tuple[int, int, np.ndarray]] = []
        high = n - t
        while high > 0:
            alive = int(below[high])
            bits = 1
            while bits < high and alive << (bits + 1) <= _SEGMENT_ENTRIES:
                bits += 1
            table = _walk(bdd, var, np.arange(alive, dtype=np.int64), high - 1, bits)
            self.segments.append((high - bits, bits, table.astype(np.int32)))
            high -= bits
        self._lists: tuple[list[list[int]], list[tuple[int, int, list[int]]]] | None = None

    def query(self, xs: np.ndarray) -> np.ndarray:
        x = (xs & np.uint64((1 << self.in_bits) - 1)).astype(np.int64)
        head = x >> (self.in_bits - self.top_bits)
        windows = [
            ((x >> low) & ((1 << bits) - 1)).astype(np.int32) for low, bits, _ in self.segments
        ]
        out = np.zeros(len(x), dtype=np.uint64)
        for j in range(self.out_bits):
            cur = self.top[j][head]
            for (_, bits, table), window in zip(self.segments, windows, strict=True):
                cur = table[(cur << bits) | window]
            out |= cur.astype(np.uint64) << np.uint64(j)
        return out

    def query_one(self, x: int) -> int:
        if self._lists is None:
            self._lists = (
                self.top.tolist(),
                [(low, bits, table.tolist()) for low, bits, table in self.segments],
            )
        tops, segments = self._lists
        x &= (1 << self.in_bits) - 1
        head = x >> (self.in_bits - self.top_bits)
        windows = [(bits, (x >> low) & ((1 << bits) - 1), t) for low, bits, t in segments]
        y = 0
        for j, row in enumerate(tops):
            cur = row[head]
            for bits, window, table in windows:
                cur = table[(cur << bits) | window]
            y |= cur << j
        return y


_SCALAR_BATCH = 4
_TOP_ENTRIES = 1 << 16
_SEGMENT_ENTRIES = 1 << 20


def _walk(bdd: BDD, var: np.ndarray, starts: np.ndarray, top: int, k: int) -> np.ndarray:
    """For each start node and each k-bit ``b``: the node reached reading input bits
    ``top .. top - k + 1`` (msb of ``b`` first), as ``out[i << k | b]``."""
    width = 1 << k
    cur = np.repeat(starts, width)
    b = np.tile(np.arange(width, dtype=np.int64), len(starts))
    for step in range(k):
        # Only nodes testing exactly this bit move; skipped levels do not matter.
        at = var[cur] == top - step
        bit = (b >> (k - 1 - step)) & 1
        cur = np.where(at, np.where(bit == 1, bdd.hi[cur], bdd.lo[cur]), cur)
    return cur
