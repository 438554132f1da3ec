"""compile_emulator: probe a segment, pick heuristics per region, fix, verify.

::

    fn ─► truth table (chunked) ─► for each output layout (whole word | bytes | bits):
                                     for each partition depth k (top k input bits):
                                       per partition: cheapest exact heuristic,
                                       bytes = model + fixes its misses need
          cheapest layout ─► planes ─► neural plane? latent_fixes = code(x) ^ wanted code
          ─► residual = planes(x) ^ f(x) ─► output_fixes
          ─► serialize ─► reload ─► query every input ─► equal to f, or CodecError

Candidates per partition, cheapest to try first: const, affine, count, bitpoly
(degree 1), poly (smooth regions, degrees 1..8 at several precisions), bitpoly
(degree 2), gfpow, bdd, mdd (level tables), mlp (trained only on the whole-output plane, when a
first-order signal exists and its int8 weights leave room under the best so
far), packed (always; the fallback).

The search is deterministic for a given ``seed``; the artifact bytes do not
depend on timing (compile seconds live only in the in-memory report).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from simulacra.codecs.emulator import models as M
from simulacra.codecs.emulator import neural as N
from simulacra.codecs.emulator.bits import SparseTable
from simulacra.codecs.emulator.emulator import MAX_IN_BITS, MAX_OUT_BITS, Emulator, Plane
from simulacra.errors import CodecError

__all__ = ["compile_emulator", "compile_table", "truth_table", "HEURISTICS"]

# Every heuristic the search may use; ``packed`` is always kept as the last resort.
HEURISTICS = frozenset(
    {"const", "affine", "count", "bitpoly", "poly", "gfpow", "bdd", "mdd", "mlp", "packed"}
)

Progress = Callable[[str, int, int], None]
_U64 = np.uint64
_CHUNK = 1 << 20


def _dtype_for(m: int) -> Any:
    return np.uint8 if m <= 8 else np.uint16 if m <= 16 else np.uint32 if m <= 32 else np.uint64


def truth_table(
    fn: Callable[..., Any],
    in_bits: int,
    out_bits: int,
    *,
    vectorized: bool = False,
    progress: Progress | None = None,
) -> np.ndarray:
    """Every output of ``fn`` over ``0..2^in_bits-1``, in the smallest unsigned dtype."""
    size = 1 << in_bits
    table = np.empty(size, dtype=_dtype_for(out_bits))
    limit = 1 << out_bits
    if vectorized:
        for start in range(0, size, _CHUNK):
            stop = min(size, start + _CHUNK)
            xs = np.arange(start, stop, dtype=np.uint64)
            ys = np.asarray(fn(xs))
            if ys.shape != xs.shape or ys.dtype.kind not in "iu":
                raise CodecError(
                    f"vectorized segment returned {ys.dtype} of shape {ys.shape}, "
                    f"expected integers of shape {xs.shape}"
                )
            if ys.size and ((ys.dtype.kind == "i" and int(ys.min()) < 0) or int(ys.max()) >= limit):
                raise CodecError(f"segment returned a value that does not fit in {out_bits} bits")
            table[start:stop] = ys
            if progress is not None:
                progress("probe", stop, size)
        return table
    step = max(1, size // 256)
    for x in range(size):
        y = fn(x)
        if not isinstance(y, int | np.integer) or not 0 <= int(y) < limit:
            raise CodecError(f"segment returned {y!r} for {x}, not a {out_bits}-bit integer")
        table[x] = y
        if progress is not None and (x + 1) % step == 0:
            progress("probe", x + 1, size)
    return table


def _model_bytes(model: M.Model) -> int:
    return len(msgpack.packb([0, *model.to_obj()], use_bin_type=True))


@dataclass(frozen=True, slots=True)
class _Options:
    seed: int
    kinds: frozenset[str]
    latent: bool


class _Costing:
    """Bytes a candidate costs: its own serialization plus the fixes for its misses."""

    def __init__(self, n: int, m: int) -> None:
        self.n, self.m = n, m

    def fixes(self, misses: int, scale: int, value_bits: int | None = None) -> float:
        if misses == 0:
            return 0.0
        total = max(1, misses * scale)
        key_bits = 2.0 + max(0.0, self.n - math.log2(total))
        return misses * (key_bits + (self.m if value_bits is None else value_bits)) / 8.0


def _misses(model: M.Model, y: np.ndarray, d: int) -> int:
    size = 1 << d
    miss = 0
    for start in range(0, size, _CHUNK):
        stop = min(size, start + _CHUNK)
        pred = model.evaluate(np.arange(start, stop, dtype=np.uint64))
        miss += int(np.count_nonzero(pred != y[start:stop]))
    return miss


def _candidates(
    y: np.ndarray,
    d: int,
    w: int,
    k: int,
    rng: np.random.Generator,
    opts: _Options,
    best: list[Any],
    latent_ok: bool,
) -> Any:
    """Yield fitted candidates, cheapest-to-try first (``best``: [bytes, kind] so far)."""
    kinds = opts.kinds
    # Neighbouring inputs with nearby outputs: polynomials' ground, not a bit network's.
    smooth = (
        "poly" in kinds
        and w >= 4
        and float(np.abs(np.diff(y.astype(np.float64))).mean()) * 64 <= 1 << w
    )
    if "const" in kinds:
        yield M.fit_const(y, d, w)
    if "affine" in kinds and (d <= 24 or k == 0):
        yield M.fit_affine(y, d, w, rng)
    if "count" in kinds and k == 0:
        yield M.fit_count(y, d, w, rng)
    if "bitpoly" in kinds and w >= 2 and d >= 2:
        yield M.fit_bitpoly(y, d, w, 1, rng)
    if "poly" in kinds and w >= 4 and d >= 4 and d <= 20:
        stale = 0
        for degree in range(1, 9):
            fits = M.fit_poly_all(y, d, w, degree, (48, 40, 32, 24, 16))
            smooth = smooth or fits is not None
            if fits is None:
                # Not smooth at this degree; higher degrees would not be cheap either.
                if degree >= 3:
                    break
                continue
            before = best[0]
            yield from fits
            # Two degrees in a row that did not help: more terms only cost more bytes.
            stale = stale + 1 if best[0] >= before else 0
            if stale >= 2:
                break
    if "bitpoly" in kinds and w >= 2 and k == 0 and d <= 20:
        yield M.fit_bitpoly(y, d, w, 2, rng)
    if "gfpow" in kinds and k == 0 and 3 <= d <= 8 and best[0] > 32:
        yield M.fit_gfpow(y, d, w, rng)
    if "bdd" in kinds and k <= 2 and d <= 20:
        yield M.fit_bdd(y, d, w)
    # Level tables share sub-functions across output groups: whole-domain planes only.
    if "mdd" in kinds and k == 0 and 2 <= d <= 20 and best[0] > 32:
        yield M.fit_mdd(y, d, w, best[0])
    # Training is the slow candidate: only where the cheap ones left real bytes on the table.
    # Only on the whole-output plane: per-bit planes would train m networks.
    # A smooth region (a polynomial fits it) is not one a bit-input network learns cheaply.
    smooth = smooth or best[1] == "poly"
    if "mlp" in kinds and latent_ok and k == 0 and 12 <= d <= 20 and best[0] > 256 and not smooth:
        hidden = 16
        # int8 weights alone must leave half the bytes for fixes, or training cannot pay.
        logits = min(int(np.unique(y).size), N.MAX_CODES + 1)
        logits = w if logits > N.MAX_CODES else logits
        if 2 * hidden * (d + logits) < best[0] and _learnable(y, d, w):
            yield N.fit_mlp(
                y, d, w, hidden=hidden, seed=opts.seed, uses_latent=opts.latent, budget=best[0]
            )


def _learnable(y: np.ndarray, d: int, w: int) -> bool:
    """Some output bit correlates with some input bit (a cheap test before training).

    Random tables fail it (|corr| ~ 2^(-d/2)); thresholds, counts and most
    arithmetic pass. A network that cannot see a first-order signal rarely pays.
    """
    size = 1 << d
    rows = np.arange(size, dtype=np.uint64)
    if size > 1 << 14:
        rows = np.random.default_rng(d).choice(size, 1 << 14, replace=False).astype(np.uint64)
    xb = ((rows[:, None] >> np.arange(d, dtype=np.uint64)) & np.uint64(1)).astype(np.float64)
    vals = y[rows.astype(np.intp)].astype(np.uint64)
    yb = ((vals[:, None] >> np.arange(w, dtype=np.uint64)) & np.uint64(1)).astype(np.float64)
    xb -= xb.mean(0)
    yb -= yb.mean(0)
    scale = np.sqrt(np.outer((xb**2).sum(0), (yb**2).sum(0))) + 1e-12
    return float(np.abs(xb.T @ yb / scale).max()) >= 0.1


def _best_model(
    y: np.ndarray,
    d: int,
    w: int,
    k: int,
    cost: _Costing,
    rng: np.random.Generator,
    opts: _Options,
    latent_ok: bool,
) -> tuple[float, M.Model, int]:
    packed = M.fit_packed(y, d, w)
    best: tuple[float, M.Model, int] = (float(_model_bytes(packed)), packed, 0)
    bound: list[Any] = [best[0], best[1].kind]
    scale = 1 << k
    for model in _candidates(y, d, w, k, rng, opts, bound, latent_ok):
        if model is None:
            continue
        own = _model_bytes(model)
        if own >= best[0]:
            continue
        miss = _misses(model, y, d)
        value_bits = model.latent_bits if getattr(model, "uses_latent", False) else None
        total = own + cost.fixes(miss, scale, value_bits)
        if total < best[0]:
            best = (total, model, miss)
            bound[0], bound[1] = total, model.kind
        # Nothing beats an exact model of a few bytes; stop searching this partition.
        if best[2] == 0 and best[0] <= 16:
            break
    return best


def _fit_plane(
    plane_y: np.ndarray,
    n: int,
    lo: int,
    w: int,
    cost: _Costing,
    opts: _Options,
    ks: list[int],
    latent_ok: bool,
) -> tuple[float, Plane, dict[str, Any]]:
    best: tuple[float, Plane, dict[str, Any]] | None = None
    for k in ks:
        rng = np.random.default_rng([opts.seed, lo, w, k])
        d = n - k
        size = 1 << d
        total = 0.0
        models: list[M.Model] = []
        misses = 0
        for p in range(1 << k):
            c, model, miss = _best_model(
                plane_y[p * size : (p + 1) * size], d, w, k, cost, rng, opts, latent_ok
            )
            total += c
            models.append(model)
            misses += miss
            if best is not None and total >= best[0]:
                break
        else:
            if best is None or total < best[0]:
                best = (total, Plane(lo, w, k, d, models), {"k": k, "misses": misses})
        if best is not None and best[2]["misses"] == 0 and best[0] <= 64:
            break
    assert best is not None
    return best


def _layouts(m: int) -> list[list[tuple[int, int]]]:
    layouts = [[(0, m)]]
    if m > 8:
        layouts.append([(lo, min(8, m - lo)) for lo in range(0, m, 8)])
    if m > 1:
        layouts.append([(b, 1) for b in range(m)])
    return layouts


def _partition_depths(n: int) -> list[int]:
    if n <= 4:
        return [0]
    if n <= 18:
        return [k for k in (0, 2, 4, 6, 8) if k <= n - 4]
    return [0, 4, 8]


def _search(
    table: np.ndarray, n: int, m: int, opts: _Options, progress: Progress | None
) -> tuple[list[Plane], dict[str, Any]]:
    cost = _Costing(n, m)
    ks = _partition_depths(n)
    layouts = _layouts(m)
    total_steps = sum(len(lay) for lay in layouts)
    done = 0
    best: tuple[float, list[Plane], list[dict[str, Any]]] | None = None
    cache: dict[tuple[int, int], tuple[float, Plane, dict[str, Any]]] = {}
    for layout in layouts:
        total = 0.0
        planes: list[Plane] = []
        infos: list[dict[str, Any]] = []
        for lo, w in layout:
            if best is not None and total >= best[0]:
                break
            if (lo, w) not in cache:
                plane_y = (table.astype(np.uint64) >> _U64(lo)) & _U64((1 << w) - 1)
                # Latent fixes are keyed by x alone, so only a whole-output plane may use them.
                latent_ok = lo == 0 and w == m
                cache[(lo, w)] = _fit_plane(plane_y, n, lo, w, cost, opts, ks, latent_ok)
            c, plane, info = cache[(lo, w)]
            total += c
            planes.append(plane)
            infos.append(info)
            done += 1
            if progress is not None:
                progress("search", done, total_steps)
        if len(planes) == len(layout) and (best is None or total < best[0]):
            best = (total, planes, infos)
        if best is not None and best[0] <= 64:
            break
    assert best is not None
    return best[1], {"estimated_bytes": round(best[0], 1), "planes": best[2]}


def _residual(
    emu: Emulator, table: np.ndarray, progress: Progress | None
) -> tuple[np.ndarray, np.ndarray]:
    size = table.size
    keys, values = [], []
    for start in range(0, size, _CHUNK):
        stop = min(size, start + _CHUNK)
        xs = np.arange(start, stop, dtype=np.uint64)
        diff = emu._raw(xs) ^ table[start:stop].astype(np.uint64)
        nz = np.flatnonzero(diff)
        keys.append(xs[nz])
        values.append(diff[nz])
        if progress is not None:
            progress("fixes", stop, size)
    return np.concatenate(keys), np.concatenate(values)


def _verify(emu: Emulator, table: np.ndarray, progress: Progress | None) -> None:
    size = table.size
    for start in range(0, size, _CHUNK):
        stop = min(size, start + _CHUNK)
        got = emu.query(np.arange(start, stop, dtype=np.uint64))
        bad = np.flatnonzero(got != table[start:stop].astype(np.uint64))
        if bad.size:
            x = start + int(bad[0])
            raise CodecError(
                f"emulator verification failed at input {x}: "
                f"got {int(got[bad[0]])}, expected {int(table[x])} (a codec bug)"
            )
        if progress is not None:
            progress("verify", stop, size)


def compile_emulator(
    fn: Callable[..., Any],
    in_bits: int,
    out_bits: int,
    *,
    vectorized: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
    heuristics: Collection[str] | None = None,
    latent_fixes: bool = True,
) -> Emulator:
    """Compile ``fn: in_bits -> out_bits`` into an exact emulator, verified on every input.

    ``fn`` takes one int and returns one int, or with ``vectorized=True`` takes a
    ``uint64`` array and returns an integer array of the same shape. ``progress``
    is called as ``progress(stage, done, total)`` through the long stages
    (``probe``, ``search``, ``fixes``, ``verify``). ``heuristics`` restricts the
    search to some of :data:`HEURISTICS` (``packed`` stays as the last resort) and
    ``latent_fixes=False`` leaves every miss to output fixes: both for ablations.
    """
    if not 1 <= in_bits <= MAX_IN_BITS:
        raise CodecError(f"in_bits must be 1..{MAX_IN_BITS}, got {in_bits}")
    if not 1 <= out_bits <= MAX_OUT_BITS:
        raise CodecError(f"out_bits must be 1..{MAX_OUT_BITS}, got {out_bits}")
    started = time.perf_counter()
    table = truth_table(fn, in_bits, out_bits, vectorized=vectorized, progress=progress)
    return compile_table(
        table,
        in_bits,
        out_bits,
        seed=seed,
        progress=progress,
        heuristics=heuristics,
        latent_fixes=latent_fixes,
        started=started,
    )


def _latent(planes: list[Plane], table: np.ndarray, n: int) -> SparseTable | None:
    """Flips of the latent code that make the denoiser land on the right output."""
    for plane in planes:
        model = plane.models[0]
        if plane.k == 0 and isinstance(model, N.MlpModel) and model.uses_latent:
            keys, values = [], []
            mask = np.uint64((1 << plane.w) - 1)
            for start in range(0, table.size, _CHUNK):
                xs = np.arange(start, min(table.size, start + _CHUNK), dtype=np.uint64)
                truth = (
                    table[start : start + xs.size].astype(np.uint64) >> np.uint64(plane.lo)
                ) & mask
                flips = model.code(xs) ^ model.target_code(truth)
                nz = np.flatnonzero(flips)
                keys.append(xs[nz])
                values.append(flips[nz].astype(np.uint64))
            return SparseTable(np.concatenate(keys), np.concatenate(values), 1 << n)
    return None


def compile_table(
    table: np.ndarray,
    in_bits: int,
    out_bits: int,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    heuristics: Collection[str] | None = None,
    latent_fixes: bool = True,
    started: float | None = None,
) -> Emulator:
    """Compile a complete truth table (``table[x] = f(x)``); see :func:`compile_emulator`."""
    started = time.perf_counter() if started is None else started
    if table.shape != (1 << in_bits,):
        raise CodecError(f"truth table must have 2^{in_bits} entries")
    kinds = HEURISTICS if heuristics is None else frozenset(heuristics)
    unknown = kinds - HEURISTICS
    if unknown:
        raise CodecError(f"unknown heuristics: {', '.join(sorted(unknown))}")
    opts = _Options(seed=seed, kinds=kinds, latent=latent_fixes)
    planes, stats = _search(table, in_bits, out_bits, opts, progress)
    latent = _latent(planes, table, in_bits)
    draft = Emulator(in_bits, out_bits, planes, latent_fixes=latent)
    keys, values = _residual(draft, table, progress)
    meta = {"verified": {"kind": "exhaustive", "inputs": 1 << in_bits}, "seed": seed}
    emu = Emulator(
        in_bits,
        out_bits,
        planes,
        output_fixes=SparseTable(keys, values, 1 << in_bits),
        latent_fixes=latent,
        meta=meta,
    )
    # Verify the artifact as it will be loaded, not the in-memory draft.
    loaded = Emulator.from_bytes(emu.to_bytes())
    _verify(loaded, table, progress)
    loaded.compile_seconds = round(time.perf_counter() - started, 3)
    loaded.stats = stats
    return loaded
