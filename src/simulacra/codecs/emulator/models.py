"""Exact heuristics: each maps a partition's local input ``u`` to a ``w``-bit value.

::

    u (d local bits) ─► model ─► value (< 2^w)      misses are left to output_fixes

    const      value = c
    affine     value = A·u ⊕ c over GF(2)       (byte tables: one gather per input byte)
    count      h = Σ_k popcount(u & mask_k)·radix_k ; value = table[h]
               (a one-layer integer net: a weighted sum of symmetric bit classes, then a lookup)
    bitpoly    value = c + Σ a_i·u_i + Σ a_ij·u_i·u_j  (mod 2^w; integer linear layer on monomials)
    poly       value = round(P(u / 2^d)), P in fixed point, Horner in int64 (smooth regions)
    gfpow      value = A·(u^e in GF(2^d) mod P) ⊕ c         (power maps, e.g. S-boxes)
    bdd        a reduced ordered decision diagram (``bdd.py``)
    mdd        shared level tables read k input bits per gather (``mdd.py``)
    packed     value = table[u]                   (the fallback; never much worse than raw)
    mlp        see ``neural.py`` (integer MLP decoder, latent fixes, codebook denoiser)

Every model evaluates with numpy integer arithmetic only, so answers are
bit-identical on every machine. ``fit_*`` functions return a model or None;
the compiler compares candidates by serialized bytes plus the cost of the
fixes their misses would need.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from simulacra.codecs.emulator.bits import pack_uint, unpack_uint, unzigzag, zigzag
from simulacra.errors import CorruptArtifact

__all__ = [
    "Model",
    "ConstModel",
    "AffineModel",
    "CountModel",
    "BitPolyModel",
    "PolyModel",
    "PackedModel",
    "BddModel",
    "MODEL_KINDS",
    "KIND_IDS",
    "EXACT_KINDS",
    "model_from_obj",
    "fit_const",
    "fit_affine",
    "fit_count",
    "fit_bitpoly",
    "fit_poly",
    "fit_packed",
    "fit_gfpow",
    "GfPowModel",
    "fit_bdd",
    "MddModel",
    "fit_mdd",
]

_U64 = np.uint64
# A count model's lookup table must stay small, or it is just a packed table.
_MAX_COUNT_TABLE = 1 << 12


def _mask(w: int) -> int:
    return (1 << w) - 1


def _byte_tables(cols: np.ndarray, d: int, dtype: Any) -> np.ndarray:
    """Per input byte j, table[j][b] = combination of cols[8j..8j+7] selected by b."""
    nbytes = (d + 7) // 8
    tables = np.zeros((nbytes, 256), dtype=dtype)
    b = np.arange(256)
    for i in range(d):
        j, bit = divmod(i, 8)
        sel = ((b >> bit) & 1).astype(bool)
        if dtype == np.uint64:
            tables[j, sel] ^= cols[i]
        else:
            tables[j, sel] += cols[i]
    return tables


def _gather_bytes(tables: np.ndarray, u: np.ndarray, xor: bool) -> np.ndarray:
    # A little-endian byte view gives each input byte without shifts or masks.
    view = np.ascontiguousarray(u, dtype="<u8").view(np.uint8).reshape(-1, 8)
    out = None
    for j in range(tables.shape[0]):
        row = tables[j]
        # A byte that contributes nothing costs no gather (row 0 may hold a constant).
        if not row.any():
            continue
        if bool((row == row[0]).all()):
            t: Any = row[0]
        else:
            t = row.take(view[:, j])
        out = t if out is None else (out ^ t if xor else out + t)
    if out is None or np.ndim(out) == 0:
        return np.full(u.shape, 0 if out is None else out, dtype=tables.dtype)
    return out


def _gather_int(tables: list[list[int]], u: int, xor: bool) -> int:
    out = 0
    for j, t in enumerate(tables):
        v = t[(u >> (8 * j)) & 255]
        out = out ^ v if xor else out + v
    return out


class Model:
    """Base of every heuristic: ``evaluate(u)`` for local inputs of one partition."""

    kind: ClassVar[str] = ""
    exact: ClassVar[bool] = True  # structural: no decision margin to report

    d: int
    w: int

    def evaluate(self, u: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def eval_int(self, u: int) -> int:
        """One input, no numpy on the way where a model can help it (the scalar path)."""
        return int(self.evaluate(np.array([u], dtype=np.uint64))[0])

    def margin(self, u: np.ndarray) -> np.ndarray:
        """Uncertainty in [0, 1] per input; 0 for exact structural heuristics."""
        return np.zeros(u.shape, dtype=np.float64)

    def to_obj(self) -> list[Any]:
        raise NotImplementedError

    @classmethod
    def from_obj(cls, obj: list[Any], d: int, w: int) -> Model:
        raise NotImplementedError


def _ints(obj: Any, n: int) -> list[int]:
    if not isinstance(obj, list) or len(obj) != n or not all(isinstance(v, int) for v in obj):
        raise CorruptArtifact("malformed model parameters")
    return obj


def _blob(obj: Any) -> bytes:
    if not isinstance(obj, bytes):
        raise CorruptArtifact("malformed model parameters")
    return obj


class ConstModel(Model):
    kind = "const"

    def __init__(self, c: int, d: int, w: int) -> None:
        self.c, self.d, self.w = c, d, w

    def evaluate(self, u: np.ndarray) -> np.ndarray:
        return np.full(u.shape, self.c, dtype=np.uint64)

    def eval_int(self, u: int) -> int:
        return self.c

    def to_obj(self) -> list[Any]:
        return [self.c]

    @classmethod
    def from_obj(cls, obj: list[Any], d: int, w: int) -> Model:
        (c,) = _ints(obj, 1)
        if not 0 <= c <= _mask(w):
            raise CorruptArtifact("constant out of range")
        return cls(c, d, w)


class AffineModel(Model):
    kind = "affine"

    def __init__(self, c: int, cols: np.ndarray, d: int, w: int) -> None:
        self.c, self.cols, self.d, self.w = c, np.asarray(cols, dtype=np.uint64), d, w
        self.tables = _byte_tables(self.cols, d, np.uint64)
        self.tables[0] ^= _U64(c)
        self.int_tables = self.tables.tolist()

    def evaluate(self, u: np.ndarray) -> np.ndarray:
        return _gather_bytes(self.tables, u, xor=True)

    def eval_int(self, u: int) -> int:
        return _gather_int(self.int_tables, u, xor=True)

    def to_obj(self) -> list[Any]:
        return [self.c, pack_uint(self.cols, self.w)]

    @classmethod
    def from_obj(cls, obj: list[Any], d: int, w: int) -> Model:
        if not isinstance(obj, list) or len(obj) != 2 or not isinstance(obj[0], int):
            raise CorruptArtifact("malformed affine model")
        if not 0 <= obj[0] <= _mask(w):
            raise CorruptArtifact("constant out of range")
        return cls(obj[0], unpack_uint(_blob(obj[1]), w, d), d, w)


class CountModel(Model):
    kind = "count"

    def __init__(self, masks: list[int], table: np.ndarray, d: int, w: int) -> None:
        self.masks, self.table, self.d, self.w = masks, np.asarray(table, np.uint64), d, w
        radix, r = [], 1
        for m in masks:
            radix.append(r)
            r *= int(m).bit_count() + 1
        self.radix = radix
        self.size = r

    def index(self, u: np.ndarray) -> np.ndarray:
        h = np.zeros(u.shape, dtype=np.int64)
        for m, r in zip(self.masks, self.radix, strict=True):
            h += np.bitwise_count(u & _U64(m)).astype(np.int64) * r
        return h

    def evaluate(self, u: np.ndarray) -> np.ndarray:
        return self.table[self.index(u)]

    def eval_int(self, u: int) -> int:
        h = 0
        for m, r in zip(self.masks, self.radix, strict=True):
            h += (u & m).bit_count() * r
        return int(self.table[h])

    def to_obj(self) -> list[Any]:
        return [self.masks, pack_uint(self.table, self.w)]

    @classmethod
    def from_obj(cls, obj: list[Any], d: int, w: int) -> Model:
        if not isinstance(obj, list) or len(obj) != 2:
            raise CorruptArtifact("malformed count model")
        masks = obj[0]
        if not isinstance(masks, list) or not all(isinstance(m, int) for m in masks):
            raise CorruptArtifact("malformed count model")
        seen = 0
        for m in masks:
            if m <= 0 or m >> d or m & seen:
                raise CorruptArtifact("count model masks overlap or leave the domain")
            seen |= m
        size = 1
        for m in masks:
            size *= m.bit_count() + 1
        if size > _MAX_COUNT_TABLE:
            raise CorruptArtifact("count model table too large")
        return cls(masks, unpack_uint(_blob(obj[1]), w, size), d, w)


class BitPolyModel(Model):
    """Integer polynomial of degree <= 2 in the input bits, wrapped to w bits."""

    kind = "bitpoly"

    def __init__(self, c: int, terms: np.ndarray, coefs: np.ndarray, d: int, w: int) -> None:
        # terms: (k, 2) int pairs (i, j), i <= j; i == j is the linear term of bit i.
        self.c, self.d, self.w = c, d, w
        self.terms = np.asarray(terms, dtype=np.int64).reshape(-1, 2)
        self.coefs = np.asarray(coefs, dtype=np.int64)
        lin = np.zeros(d, dtype=np.int64)
        rows: dict[int, np.ndarray] = {}
        for (i, j), a in zip(self.terms.tolist(), self.coefs.tolist(), strict=True):
            if i == j:
                lin[i] += a
            else:
                rows.setdefault(i, np.zeros(d, dtype=np.int64))[j] += a
        self.lin_tables = _byte_tables(lin, d, np.int64)
        self.lin_tables[0] += c
        self.row_tables = [(i, _byte_tables(r, d, np.int64)) for i, r in sorted(rows.items())]
        self.rank1 = _rank_one(rows, d)
        if self.rank1 is not None:
            alpha, beta = self.rank1
            self.alpha_tables = _byte_tables(alpha, d, np.int64)
            self.beta_tables = _byte_tables(beta, d, np.int64)
        self.int_lin = self.lin_tables.tolist()
        self.int_rows = [(i, t.tolist()) for i, t in self.row_tables]

    def raw(self, u: np.ndarray) -> np.ndarray:
        acc = _gather_bytes(self.lin_tables, u, xor=False)
        if self.rank1 is not None:
            # sum_ij a_i b_j u_i u_j == (sum_i a_i u_i)(sum_j b_j u_j): two linear forms.
            a = _gather_bytes(self.alpha_tables, u, xor=False)
            return acc + a * _gather_bytes(self.beta_tables, u, xor=False)
        for i, tables in self.row_tables:
            bit = ((u >> _U64(i)) & _U64(1)).astype(bool)
            acc = acc + np.where(bit, _gather_bytes(tables, u, xor=False), 0)
        return acc

    def eval_int(self, u: int) -> int:
        acc = _gather_int(self.int_lin, u, xor=False)
        for i, tables in self.int_rows:
            if u >> i & 1:
                acc += _gather_int(tables, u, xor=False)
        return acc & _mask(self.w)

    def evaluate(self, u: np.ndarray) -> np.ndarray:
        return self.raw(u).astype(np.uint64) & _U64(_mask(self.w))

    def to_obj(self) -> list[Any]:
        flat = (self.terms[:, 0] * self.d + self.terms[:, 1]).astype(np.uint64)
        width = max(1, int(flat.max()).bit_length()) if flat.size else 1
        zz = zigzag(self.coefs)
        cw = int(zz.max()).bit_length() if zz.size else 0
        return [self.c, int(flat.size), width, pack_uint(flat, width), cw, pack_uint(zz, cw)]

    @classmethod
    def from_obj(cls, obj: list[Any], d: int, w: int) -> Model:
        if not isinstance(obj, list) or len(obj) != 6:
            raise CorruptArtifact("malformed bitpoly model")
        c, n, width, flat_b, cw, coef_b = obj
        if not all(isinstance(v, int) for v in (c, n, width, cw)) or not 0 <= n <= d * d:
            raise CorruptArtifact("malformed bitpoly model")
        flat = unpack_uint(_blob(flat_b), width, n).astype(np.int64)
        if flat.size and int(flat.max()) >= d * d:
            raise CorruptArtifact("bitpoly term out of range")
        terms = np.stack([flat // d, flat % d], axis=1) if n else np.zeros((0, 2), np.int64)
        if n and not bool(np.all(terms[:, 0] <= terms[:, 1])):
            raise CorruptArtifact("bitpoly term out of order")
        coefs = unzigzag(unpack_uint(_blob(coef_b), cw, n))
        if abs(c) >= 1 << 62 or (coefs.size and int(np.abs(coefs).max()) >= 1 << 40):
            raise CorruptArtifact("bitpoly coefficient out of range")
        return cls(c, terms, coefs, d, w)


def _rank_one(rows: dict[int, np.ndarray], d: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Integer alpha, beta with C = alpha beta^T over disjoint bit sets, if they exist."""
    if not rows:
        return None
    first = next(iter(sorted(rows)))
    beta = rows[first].copy()
    g = int(np.gcd.reduce(np.abs(beta[beta != 0]))) if np.any(beta) else 0
    if g == 0:
        return None
    beta //= g
    j0 = int(np.flatnonzero(beta)[0])
    alpha = np.zeros(d, dtype=np.int64)
    for i, r in rows.items():
        if r[j0] % beta[j0]:
            return None
        alpha[i] = r[j0] // beta[j0]
    # Bits in alpha and beta must not overlap, or u_i^2 = u_i terms would appear.
    if np.any((alpha != 0) & (beta != 0)):
        return None
    for i, r in rows.items():
        if not np.array_equal(r, alpha[i] * beta):
            return None
    return alpha, beta


class PolyModel(Model):
    """value = round(P(u / 2^d)) with P's coefficients in fixed point (F fraction bits)."""

    kind = "poly"
    exact = False

    def __init__(self, frac: int, coefs: np.ndarray, d: int, w: int) -> None:
        self.frac, self.coefs, self.d, self.w = frac, np.asarray(coefs, np.int64), d, w
        self.int_coefs = self.coefs.tolist()

    def fixed(self, u: np.ndarray) -> np.ndarray:
        ui = u.astype(np.int64)
        c = self.coefs
        acc = np.full(u.shape, c[-1], dtype=np.int64)
        for j in range(c.size - 2, -1, -1):
            acc = ((acc * ui) >> self.d) + c[j]
        return acc

    def evaluate(self, u: np.ndarray) -> np.ndarray:
        acc = self.fixed(u)
        half = 1 << (self.frac - 1) if self.frac else 0
        return ((acc + half) >> self.frac).astype(np.uint64) & _U64(_mask(self.w))

    def eval_int(self, u: int) -> int:
        # Python ints floor-shift like numpy int64, and the compiler rules out overflow.
        c = self.int_coefs
        acc = c[-1]
        for j in range(len(c) - 2, -1, -1):
            acc = ((acc * u) >> self.d) + c[j]
        half = 1 << (self.frac - 1) if self.frac else 0
        return ((acc + half) >> self.frac) & _mask(self.w)

    def margin(self, u: np.ndarray) -> np.ndarray:
        if self.frac == 0:
            return np.zeros(u.shape, dtype=np.float64)
        one = 1 << self.frac
        frac = (self.fixed(u) & (one - 1)).astype(np.float64) / one
        # 1 right at a rounding boundary (x.5), 0 at an integer.
        return 1.0 - 2.0 * np.abs(frac - 0.5)

    def to_obj(self) -> list[Any]:
        zz = zigzag(self.coefs)
        cw = int(zz.max()).bit_length()
        return [self.frac, int(self.coefs.size), cw, pack_uint(zz, cw)]

    @classmethod
    def from_obj(cls, obj: list[Any], d: int, w: int) -> Model:
        if not isinstance(obj, list) or len(obj) != 4:
            raise CorruptArtifact("malformed poly model")
        frac, n, cw, blob = obj
        if not all(isinstance(v, int) for v in (frac, n, cw)) or not (0 <= frac < 62):
            raise CorruptArtifact("malformed poly model")
        if not 1 <= n <= 16 or not 0 <= cw <= 64:
            raise CorruptArtifact("malformed poly model")
        coefs = unzigzag(unpack_uint(_blob(blob), cw, n))
        # The compiler keeps sum|c| * 2^d < 2^62 so Horner never overflows int64.
        if float(np.abs(coefs.astype(np.float64)).sum()) * 2.0**d >= 2.0**62:
            raise CorruptArtifact("poly coefficients could overflow")
        return cls(frac, coefs, d, w)


def _gf_mul(a: np.ndarray, b: np.ndarray, poly: int, d: int) -> np.ndarray:
    """Carry-less product mod ``poly`` in GF(2^d), elementwise."""
    a = a.astype(np.int64).copy()
    out = np.zeros_like(a)
    top = 1 << d
    for i in range(d):
        out ^= np.where((b >> i) & 1, a, 0)
        a <<= 1
        a = np.where(a & top, a ^ poly, a)
    return out


def _gf_pow_table(poly: int, exponent: int, d: int) -> np.ndarray:
    x = np.arange(1 << d, dtype=np.int64)
    result = np.ones_like(x)
    base = x.copy()
    e = exponent
    while e:
        if e & 1:
            result = _gf_mul(result, base, poly, d)
        base = _gf_mul(base, base, poly, d)
        e >>= 1
    return result


def _irreducible(poly: int, d: int) -> bool:
    # No factor of degree 1..d/2: trial division by every such polynomial.
    for deg in range(1, d // 2 + 1):
        for q in range(1 << deg, 1 << (deg + 1)):
            r = poly
            while r.bit_length() > deg:
                r ^= q << (r.bit_length() - 1 - deg)
            if r == 0:
                return False
    return True


class GfPowModel(Model):
    """value = A·(u^e in GF(2^d) mod P) ⊕ c: power maps such as S-box inversions."""

    kind = "gfpow"

    def __init__(self, poly: int, exponent: int, affine: AffineModel, d: int, w: int) -> None:
        self.poly, self.exponent, self.affine, self.d, self.w = poly, exponent, affine, d, w
        self.power = _gf_pow_table(poly, exponent, d).astype(np.uint64)
        self.int_power = self.power.tolist()

    def evaluate(self, u: np.ndarray) -> np.ndarray:
        return self.affine.evaluate(self.power.take(u.astype(np.intp)))

    def eval_int(self, u: int) -> int:
        return self.affine.eval_int(self.int_power[u])

    def to_obj(self) -> list[Any]:
        return [self.poly, self.exponent, *self.affine.to_obj()]

    @classmethod
    def from_obj(cls, obj: list[Any], d: int, w: int) -> Model:
        if not isinstance(obj, list) or len(obj) != 4:
            raise CorruptArtifact("malformed gfpow model")
        poly, exponent = obj[0], obj[1]
        if not (isinstance(poly, int) and isinstance(exponent, int)) or d > _MAX_GF_BITS:
            raise CorruptArtifact("malformed gfpow model")
        if poly >> d != 1 or not 0 < exponent < 1 << d:
            raise CorruptArtifact("gfpow parameters out of range")
        affine = AffineModel.from_obj(obj[2:], d, w)
        return cls(poly, exponent, affine, d, w)  # type: ignore[arg-type]


_MAX_GF_BITS = 10


class PackedModel(Model):
    kind = "packed"

    def __init__(self, table: np.ndarray, d: int, w: int) -> None:
        self.d, self.w = d, w
        dtype = (
            np.uint8 if w <= 8 else np.uint16 if w <= 16 else np.uint32 if w <= 32 else np.uint64
        )
        self.table = np.asarray(table).astype(dtype)

    def evaluate(self, u: np.ndarray) -> np.ndarray:
        return self.table.take(u.astype(np.intp)).astype(np.uint64)

    def eval_int(self, u: int) -> int:
        return int(self.table[u])

    def to_obj(self) -> list[Any]:
        return [pack_uint(self.table.astype(np.uint64), self.w)]

    @classmethod
    def from_obj(cls, obj: list[Any], d: int, w: int) -> Model:
        if not isinstance(obj, list) or len(obj) != 1:
            raise CorruptArtifact("malformed packed model")
        return cls(unpack_uint(_blob(obj[0]), w, 1 << d), d, w)


class BddModel(Model):
    kind = "bdd"

    def __init__(self, bdd: Any, d: int, w: int) -> None:
        self.bdd, self.d, self.w = bdd, d, w

    def evaluate(self, u: np.ndarray) -> np.ndarray:
        return np.asarray(self.bdd.query(u), dtype=np.uint64)

    def eval_int(self, u: int) -> int:
        # Use a scalar walk when the diagram offers one; numpy otherwise.
        one = getattr(self.bdd, "query_one", None)
        if one is not None:
            return int(one(u))
        return int(self.evaluate(np.array([u], dtype=np.uint64))[0])

    def to_obj(self) -> list[Any]:
        return [bytes(self.bdd.to_bytes())]

    @classmethod
    def from_obj(cls, obj: list[Any], d: int, w: int) -> Model:
        if not isinstance(obj, list) or len(obj) != 1:
            raise CorruptArtifact("malformed bdd model")
        bdd_cls = _bdd_class()
        if bdd_cls is None:
            raise CorruptArtifact("artifact needs the decision-diagram heuristic, not built in")
        try:
            bdd = bdd_cls.from_bytes(_blob(obj[0]))
        except CorruptArtifact:
            raise
        except Exception as exc:
            raise CorruptArtifact(f"bad decision diagram: {exc}") from None
        return cls(bdd, d, w)


class MddModel(Model):
    kind = "mdd"

    def __init__(self, tables: Any, d: int, w: int) -> None:
        self.tables, self.d, self.w = tables, d, w

    def evaluate(self, u: np.ndarray) -> np.ndarray:
        return self.tables.query(u)

    def eval_int(self, u: int) -> int:
        return int(self.tables.query_one(u))

    def to_obj(self) -> list[Any]:
        return [self.tables.to_obj()]

    @classmethod
    def from_obj(cls, obj: list[Any], d: int, w: int) -> Model:
        from simulacra.codecs.emulator.mdd import LevelTables

        if not isinstance(obj, list) or len(obj) != 1:
            raise CorruptArtifact("malformed mdd model")
        return cls(LevelTables.from_obj(obj[0], d, w), d, w)


def _bdd_class() -> Any:
    try:
        from simulacra.codecs.emulator.bdd import BDD
    except ImportError:
        return None
    return BDD


MODEL_KINDS: dict[str, type[Model]] = {
    m.kind: m
    for m in (
        ConstModel,
        AffineModel,
        CountModel,
        BitPolyModel,
        PolyModel,
        PackedModel,
        BddModel,
        GfPowModel,
        MddModel,
    )
}
EXACT_KINDS = frozenset(k for k, m in MODEL_KINDS.items() if m.exact)
# Kinds are stored as one small int; ids are part of the format (never reuse one).
KIND_IDS: dict[str, int] = {
    "const": 0,
    "affine": 1,
    "count": 2,
    "bitpoly": 3,
    "poly": 4,
    "packed": 5,
    "bdd": 6,
    "mlp": 7,
    "gfpow": 8,
    "mdd": 9,
}
_KIND_NAMES = {v: k for k, v in KIND_IDS.items()}


def model_from_obj(obj: Any, d: int, w: int) -> Model:
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], int):
        raise CorruptArtifact("malformed model entry")
    name = _KIND_NAMES.get(obj[0], "")
    cls = MODEL_KINDS.get(name)
    if cls is None:
        from simulacra.codecs.emulator import neural

        cls = neural.NEURAL_KINDS.get(name)
    if cls is None:
        raise CorruptArtifact(f"unknown heuristic {obj[0]!r}")
    return cls.from_obj(obj[1:], d, w)


# --- fitting -------------------------------------------------------------------------


def fit_const(y: np.ndarray, d: int, w: int) -> Model:
    vals, counts = np.unique(y, return_counts=True)
    return ConstModel(int(vals[np.argmax(counts)]), d, w)


def fit_affine(y: np.ndarray, d: int, w: int, rng: np.random.Generator) -> Model | None:
    best: Model | None = None
    best_miss = None
    size = 1 << d
    anchors = [0] + [int(a) for a in rng.integers(0, size, 3)]
    for a in anchors:
        fa = int(y[a])
        cols = np.array([int(y[a ^ (1 << i)]) ^ fa for i in range(d)], dtype=np.uint64)
        # f(x) = A x ^ c and f(a) = A a ^ c, so c = f(a) ^ A a.
        aa = 0
        for i in range(d):
            if a >> i & 1:
                aa ^= int(cols[i])
        model = AffineModel(fa ^ aa, cols, d, w)
        miss = int(np.count_nonzero(model.evaluate(np.arange(size, dtype=np.uint64)) != y))
        if best_miss is None or miss < best_miss:
            best, best_miss = model, miss
        if miss == 0:
            break
    return best


def _swap_ok(y: np.ndarray, u: np.ndarray, i: int, j: int) -> bool:
    bi = (u >> _U64(i)) & _U64(1)
    bj = (u >> _U64(j)) & _U64(1)
    sel = bi != bj
    if not bool(sel.any()):
        return True
    us = u[sel]
    swapped = us ^ _U64((1 << i) | (1 << j))
    return bool(np.array_equal(y[us.astype(np.intp)], y[swapped.astype(np.intp)]))


def fit_count(y: np.ndarray, d: int, w: int, rng: np.random.Generator) -> Model | None:
    """Group input bits into classes the output is symmetric in; count each class."""
    size = 1 << d
    sample = (
        np.arange(size, dtype=np.uint64)
        if size <= 1 << 16
        else rng.integers(0, size, 1 << 16, dtype=np.uint64)
    )
    classes: list[list[int]] = []
    for i in range(d):
        for cls in classes:
            if _swap_ok(y, sample, cls[0], i):
                cls.append(i)
                break
        else:
            classes.append([i])
        table_size = 1
        for cls in classes:
            table_size *= len(cls) + 1
        if table_size * (d - i) > _MAX_COUNT_TABLE * 4 and table_size > _MAX_COUNT_TABLE:
            return None
    masks = [sum(1 << b for b in cls) for cls in classes]
    model = CountModel(masks, np.zeros(1, np.uint64), d, w)
    if model.size > _MAX_COUNT_TABLE:
        return None
    h = model.index(np.arange(size, dtype=np.uint64))
    table = np.zeros(model.size, dtype=np.uint64)
    _, first = np.unique(h, return_index=True)
    table[h[first]] = y[first]
    return CountModel(masks, table, d, w)


def _bit_features(u: np.ndarray, d: int, degree: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    bits = ((u[:, None] >> np.arange(d, dtype=np.uint64)) & _U64(1)).astype(np.float64)
    terms = [(i, i) for i in range(d)]
    cols = [bits]
    if degree >= 2:
        pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
        ii = np.array([p[0] for p in pairs], dtype=np.intp)
        jj = np.array([p[1] for p in pairs], dtype=np.intp)
        cols.append(bits[:, ii] * bits[:, jj])
        terms += pairs
    return np.concatenate([np.ones((u.size, 1)), *cols], axis=1), terms


@functools.lru_cache(maxsize=32)
def _bitpoly_basis(d: int, degree: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Fitting rows (a fixed sample per d), the pseudo-inverse of their features, the terms."""
    size = 1 << d
    nfeat = 1 + d + (d * (d - 1) // 2 if degree >= 2 else 0)
    rows = min(size, max(4 * nfeat, 4096))
    sampler = np.random.default_rng([d, degree])
    u = (
        np.arange(size, dtype=np.uint64)
        if rows == size
        else np.sort(sampler.choice(size, rows, replace=False)).astype(np.uint64)
    )
    x, terms = _bit_features(u, d, degree)
    return u.astype(np.intp), np.linalg.pinv(x), terms


def fit_bitpoly(
    y: np.ndarray, d: int, w: int, degree: int, rng: np.random.Generator
) -> Model | None:
    """Least squares on bit monomials; integer-rounded weights (a one-layer integer net)."""
    if w > 40 or d < 2:
        return None
    rows, pinv, terms = _bitpoly_basis(d, degree)
    coef = pinv @ y[rows].astype(np.float64)
    if not np.all(np.isfinite(coef)):
        return None
    ic = np.rint(coef).astype(np.int64)
    if int(np.abs(ic).max(initial=0)) >= 1 << 40:
        return None
    keep = np.flatnonzero(ic[1:])
    t = np.array([terms[k] for k in keep], dtype=np.int64).reshape(-1, 2)
    return BitPolyModel(int(ic[0]), t, ic[1:][keep], d, w)


def fit_poly(y: np.ndarray, d: int, w: int, degree: int, frac: int) -> Model | None:
    """Fixed-point polynomial in the scalar u / 2^d (smooth regions)."""
    fits = fit_poly_all(y, d, w, degree, (frac,))
    return fits[0] if fits else None


def fit_poly_all(
    y: np.ndarray, d: int, w: int, degree: int, fracs: tuple[int, ...]
) -> list[Model] | None:
    """One least-squares fit, quantized at each precision in ``fracs``.

    None when the float fit is off by more than 8 units somewhere on average
    (not smooth at this degree: the fixes would cost more than a table).
    """
    size = 1 << d
    if degree + 1 > size or w > 40:
        return None
    vander, pinv = _poly_basis(d, degree)
    target = y.astype(np.float64)
    a = pinv @ target
    if not np.all(np.isfinite(a)):
        return None
    err = np.abs(vander @ a - target)
    if float(err.mean()) > 8.0:
        return None
    out = [m for m in (_quantize_poly(a, d, w, f) for f in fracs) if m is not None]
    return out or None


@functools.lru_cache(maxsize=64)
def _poly_basis(d: int, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Vandermonde matrix on t = u / 2^d and its pseudo-inverse, shared by all partitions."""
    t = np.arange(1 << d, dtype=np.float64) / (1 << d)
    vander = np.polynomial.polynomial.polyvander(t, degree)
    return vander, np.linalg.pinv(vander)


def _quantize_poly(a: np.ndarray, d: int, w: int, frac: int) -> Model | None:
    mag = float(np.abs(a).sum()) + 1.0
    frac = min(frac, 61 - d - int(np.ceil(np.log2(mag))))
    if frac < 1:
        return None
    coefs = np.rint(a * 2.0**frac).astype(np.int64)
    if float(np.abs(coefs.astype(np.float64)).sum()) * 2.0**d >= 2.0**62:
        return None
    return PolyModel(frac, coefs, d, w)


def fit_gfpow(y: np.ndarray, d: int, w: int, rng: np.random.Generator) -> Model | None:
    """Search irreducible moduli and a few exponents for y = A·u^e ⊕ c."""
    if not 3 <= d <= 8:
        return None
    best: Model | None = None
    best_miss = None
    exponents = [(1 << d) - 2, 3, 5, 7]
    for poly in range(1 << d, 1 << (d + 1)):
        if not poly & 1 or not _irreducible(poly, d):
            continue
        for e in exponents:
            power = _gf_pow_table(poly, e, d)
            if np.unique(power).size != power.size:
                continue
            inverse = np.empty_like(power)
            inverse[power] = np.arange(power.size)
            # y as a function of z = u^e, then an affine fit of that.
            affine = fit_affine(y[inverse], d, w, rng)
            if affine is None:
                continue
            model = GfPowModel(poly, e, affine, d, w)  # type: ignore[arg-type]
            miss = int(np.count_nonzero(model.evaluate(np.arange(1 << d, dtype=np.uint64)) != y))
            if best_miss is None or miss < best_miss:
                best, best_miss = model, miss
            if miss == 0:
                return best
    return best


def fit_packed(y: np.ndarray, d: int, w: int) -> Model:
    return PackedModel(y, d, w)


def fit_bdd(y: np.ndarray, d: int, w: int) -> Model | None:
    bdd_cls = _bdd_class()
    if bdd_cls is None or d > 20:
        return None
    try:
        bdd = bdd_cls.from_truth_table(np.asarray(y, dtype=np.uint64), d, w)
    except Exception:
        return None
    return BddModel(bdd, d, w)


def fit_mdd(y: np.ndarray, d: int, w: int, budget_bytes: float | None = None) -> Model | None:
    from simulacra.codecs.emulator.mdd import fit_level_tables

    budget = None if budget_bytes is None else 8.0 * budget_bytes
    found = fit_level_tables(np.asarray(y, dtype=np.uint64), d, w, budget)
    return None if found is None else MddModel(found[0], d, w)
