"""The compiled emulator: query path, artifact, patches, report, probes.

::

    x ─► for each output plane [lo, lo+w):                      (generator: partition map)
           p = x >> d, u = x & (2^d - 1) ─► model[p](u) ─► bits << lo
         neural models:  decoder(u) ─► b ^= latent_fixes[x] ─► denoiser(b)
         y ^= output_fixes[x]                                    (Elias-Fano keys, XOR values)
         y  = patches.get(x, y)                                  (versioned overrides)

Every step is numpy integer arithmetic: the same bytes give the same answers
on every machine. Sections of the ``.emu`` artifact: ``meta`` (msgpack list: in_bits,
out_bits, version, verified inputs, seed),
``model`` (msgpack list of planes), ``latent_fixes``, ``output_fixes``,
``patches`` (sparse tables, see ``bits.py``). ``report()["review_regions"]``
lists the input windows densest in fixes or lowest in decision margin, for a
human to look at first (see ``review_regions``).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from simulacra.codecs.emulator.artifact import (
    FORMAT_VERSION,
    MAX_ARTIFACT_BYTES,
    read_container,
    write_container,
)
from simulacra.codecs.emulator.bits import SparseTable
from simulacra.codecs.emulator.models import (
    EXACT_KINDS,
    KIND_IDS,
    ConstModel,
    Model,
    PolyModel,
    model_from_obj,
)
from simulacra.errors import CodecError, CorruptArtifact, PayloadTooBig

__all__ = ["CODEC_VERSION", "Plane", "Emulator", "load_emulator"]

CODEC_VERSION = FORMAT_VERSION
MAX_IN_BITS = 26
MAX_OUT_BITS = 64
_U64 = np.uint64
_MAX_PLANES = 64
_MAX_PARTITION_BITS = 16
# Small batches skip the sort-based dispatch: one pass per distinct partition.
_SMALL_BATCH = 64
_CACHE_CHUNK = 1 << 15
# Review regions: the domain in this many windows at most, this many regions listed.
REVIEW_WINDOWS = 64
REVIEW_LIMIT = 8
_REVIEW_SAMPLES = 256


class Plane:
    """Output bits [lo, lo + w), partitioned by the top k input bits."""

    __slots__ = ("lo", "w", "k", "d", "models", "_uniform", "_stacked")

    def __init__(self, lo: int, w: int, k: int, d: int, models: list[Model]) -> None:
        if len(models) != 1 << k:
            raise ValueError("a plane needs one model per partition")
        self.lo, self.w, self.k, self.d, self.models = lo, w, k, d, models
        self._uniform = len(models) == 1
        self._stacked = None if self._uniform else _stack(models, d, w)

    def _dispatch(self, x: np.ndarray, fn: Any, out: np.ndarray) -> np.ndarray:
        dmask = _U64((1 << self.d) - 1)
        if self._uniform:
            out[:] = fn(self.models[0], x & dmask, slice(None))
            return out
        p = (x >> _U64(self.d)).astype(np.intp)
        if x.size <= _SMALL_BATCH:
            for part in np.unique(p).tolist():
                idx = np.flatnonzero(p == part)
                out[idx] = fn(self.models[part], x[idx] & dmask, idx)
            return out
        order = np.argsort(p, kind="stable")
        bounds = np.searchsorted(p[order], np.arange(len(self.models) + 1))
        for part in np.flatnonzero(np.diff(bounds)).tolist():
            idx = order[bounds[part] : bounds[part + 1]]
            out[idx] = fn(self.models[part], x[idx] & dmask, idx)
        return out

    def evaluate(self, x: np.ndarray, latent: np.ndarray | None = None) -> np.ndarray:
        if self._stacked is not None:
            return self._stacked(x)

        def run(model: Model, u: np.ndarray, idx: Any) -> np.ndarray:
            if latent is not None and getattr(model, "uses_latent", False):
                return model.evaluate_latent(u, latent[idx])  # type: ignore[attr-defined]
            return model.evaluate(u)

        return self._dispatch(x, run, np.empty(x.size, dtype=np.uint64))

    def margin(self, x: np.ndarray) -> np.ndarray:
        return self._dispatch(x, lambda m, u, _i: m.margin(u), np.empty(x.size, dtype=np.float64))

    def to_obj(self) -> list[Any]:
        return [self.lo, self.w, self.k, [[KIND_IDS[m.kind], *m.to_obj()] for m in self.models]]


def _stack(models: list[Model], d: int, w: int) -> Any:
    """One vectorized evaluator for a plane whose partitions share a kind (no sort)."""
    if all(isinstance(m, ConstModel) for m in models):
        values = np.array([m.c for m in models], dtype=np.uint64)  # type: ignore[attr-defined]
        return lambda x: values.take((x >> _U64(d)).astype(np.intp))
    if all(isinstance(m, PolyModel) for m in models):
        width = max(m.coefs.size for m in models)  # type: ignore[attr-defined]
        coefs = np.zeros((len(models), width), dtype=np.int64)
        for i, m in enumerate(models):
            # Leading zeros leave Horner's result unchanged.
            coefs[i, : m.coefs.size] = m.coefs  # type: ignore[attr-defined]
        cols = np.ascontiguousarray(coefs.T)
        frac = np.array([m.frac for m in models], dtype=np.int64)  # type: ignore[attr-defined]
        half = np.where(frac > 0, np.left_shift(1, np.maximum(frac - 1, 0)), 0)
        dmask, wmask = _U64((1 << d) - 1), _U64((1 << w) - 1)

        def poly_chunk(x: np.ndarray) -> np.ndarray:
            p = (x >> _U64(d)).astype(np.intp)
            u = (x & dmask).astype(np.int64)
            acc = cols[-1].take(p)
            for j in range(width - 2, -1, -1):
                acc *= u
                acc >>= d
                acc += cols[j].take(p)
            acc += half.take(p)
            acc >>= frac.take(p)
            return acc.view(np.uint64) & wmask

        def poly(x: np.ndarray) -> np.ndarray:
            if x.size <= _CACHE_CHUNK:
                return poly_chunk(x)
            # Cache-sized chunks: Horner makes many passes over the same arrays.
            out = np.empty(x.size, dtype=np.uint64)
            for s in range(0, x.size, _CACHE_CHUNK):
                out[s : s + _CACHE_CHUNK] = poly_chunk(x[s : s + _CACHE_CHUNK])
            return out

        return poly
    return None


class Emulator:
    """An exact, random-access emulator of ``f: in_bits -> out_bits``."""

    def __init__(
        self,
        in_bits: int,
        out_bits: int,
        planes: list[Plane],
        *,
        output_fixes: SparseTable | None = None,
        latent_fixes: SparseTable | None = None,
        patches: SparseTable | None = None,
        version: int = 1,
        meta: Mapping[str, Any] | None = None,
        compile_seconds: float | None = None,
        stats: Mapping[str, Any] | None = None,
    ) -> None:
        if not 1 <= in_bits <= MAX_IN_BITS or not 1 <= out_bits <= MAX_OUT_BITS:
            raise CodecError(f"unsupported shape {in_bits}->{out_bits} bits")
        universe = 1 << in_bits
        self.in_bits, self.out_bits = in_bits, out_bits
        self.planes = planes
        self.output_fixes = output_fixes or SparseTable(np.zeros(0), np.zeros(0), universe)
        self.latent_fixes = latent_fixes or SparseTable(np.zeros(0), np.zeros(0), universe)
        self.patches = patches or SparseTable(np.zeros(0), np.zeros(0), universe)
        self.version = version
        self.meta = dict(meta or {})
        self.compile_seconds = compile_seconds
        self.stats = dict(stats or {})
        self._bytes: bytes | None = None
        self._scalar: tuple[list[int], ...] | None = None
        self._out_mask = _U64((1 << out_bits) - 1)
        self._review: list[dict[str, Any]] | None = None

    # --- queries ---------------------------------------------------------------------

    def _check_inputs(self, xs: Any) -> tuple[np.ndarray, tuple[int, ...]]:
        arr = np.asarray(xs)
        if arr.dtype.kind not in "iu":
            if arr.size == 0:
                arr = arr.astype(np.uint64)
            else:
                raise CodecError(f"emulator inputs must be integers, got {arr.dtype}")
        if arr.size and (
            (arr.dtype.kind == "i" and int(arr.min()) < 0) or int(arr.max()) >> self.in_bits
        ):
            raise CodecError(f"emulator input outside 0..2^{self.in_bits}-1")
        return arr.astype(np.uint64, copy=False).ravel(), arr.shape

    def _raw(self, x: np.ndarray) -> np.ndarray:
        """Planes and latent fixes only: the output before output_fixes and patches."""
        latent = self.latent_fixes.lookup(x) if len(self.latent_fixes) else None
        if len(self.planes) == 1 and self.planes[0].lo == 0:
            return self.planes[0].evaluate(x, latent)
        y = np.zeros(x.size, dtype=np.uint64)
        for plane in self.planes:
            v = plane.evaluate(x, latent)
            y |= v << _U64(plane.lo) if plane.lo else v
        return y

    def _answer(self, x: np.ndarray) -> np.ndarray:
        y = self._raw(x)
        if len(self.output_fixes):
            y ^= self.output_fixes.lookup(x)
        if len(self.patches):
            present, idx = self.patches.find(x)
            y = np.where(present, self.patches.values[idx], y)
        return y

    def query(self, xs: Any) -> np.ndarray:
        """Exact outputs (``uint64``) for an array of inputs, same shape."""
        x, shape = self._check_inputs(xs)
        return self._answer(x).reshape(shape)

    def __call__(self, x: int) -> int:
        """One input: pure-Python arithmetic on the same integer tables as ``query``."""
        x = int(x)
        if not 0 <= x < 1 << self.in_bits:
            raise CodecError(f"emulator input outside 0..2^{self.in_bits}-1")
        if self._scalar is None:
            self._scalar = self._build_scalar()
        fix_keys, fix_values, patch_keys, patch_values, latent_keys, latent_values = self._scalar
        if patch_keys:
            i = bisect_left(patch_keys, x)
            if i < len(patch_keys) and patch_keys[i] == x:
                return patch_values[i]
        flip = None
        if latent_keys:
            i = bisect_left(latent_keys, x)
            flip = latent_values[i] if i < len(latent_keys) and latent_keys[i] == x else 0
        y = 0
        for plane in self.planes:
            model = plane.models[x >> plane.d] if plane.k else plane.models[0]
            u = x & ((1 << plane.d) - 1)
            if flip is not None and getattr(model, "uses_latent", False):
                arr, flips = np.array([u], np.uint64), np.array([flip], np.uint64)
                v = int(model.evaluate_latent(arr, flips)[0])  # type: ignore[attr-defined]
            else:
                v = model.eval_int(u)
            y |= v << plane.lo
        if fix_keys:
            i = bisect_left(fix_keys, x)
            if i < len(fix_keys) and fix_keys[i] == x:
                y ^= fix_values[i]
        return y

    def _build_scalar(self) -> tuple[list[int], ...]:
        return (
            self.output_fixes.keys.tolist(),
            self.output_fixes.values.tolist(),
            self.patches.keys.tolist(),
            self.patches.values.tolist(),
            self.latent_fixes.keys.tolist(),
            self.latent_fixes.values.tolist(),
        )

    # --- uncertainty and probing ---------------------------------------------------------

    def uncertainty(self, xs: Any) -> np.ndarray:
        """A score in [0, 1] per input: how close the answer came to needing a fix.

        It combines the model's decision margin (distance of a fixed-point value to
        its rounding boundary, or a neural output to its threshold; 0 for exact
        structural heuristics) with the density of output fixes in a window of
        ``2^ceil(in_bits/2)`` inputs around x: ``1 - (1 - margin)(1 - density)``.
        """
        x, shape = self._check_inputs(xs)
        margin = np.zeros(x.size, dtype=np.float64)
        for plane in self.planes:
            margin = np.maximum(margin, plane.margin(x))
        density = np.zeros(x.size, dtype=np.float64)
        keys = self.output_fixes.keys
        if keys.size:
            half = 1 << ((self.in_bits + 1) // 2 - 1)
            xi = x.astype(np.int64)
            lo = np.searchsorted(keys, np.maximum(xi - half, 0).astype(np.uint64))
            hi = np.searchsorted(keys, (xi + half).astype(np.uint64))
            density = np.minimum(1.0, (hi - lo) / (2.0 * half))
        return (1.0 - (1.0 - np.clip(margin, 0.0, 1.0)) * (1.0 - density)).reshape(shape)

    def boundaries(
        self, lines: int = 8, samples: int = 256, seed: int = 0, mode: str = "int"
    ) -> dict[str, Any]:
        """Walk straight lines through the input space and list where the output changes.

        ``mode="int"``: inputs are integers; a line is ``x_t = start + t*step mod 2^n``
        for t in 0..samples-1 with a random start and a random odd step.
        ``mode="bits"``: inputs are bit vectors; a line runs from a random corner ``a``
        to its complement, flipping one bit per step in a random order (n + 1 points).
        Returns ``{"mode", "lines": [{"start", "step" | "order", "changes":
        [[t, x_before, x_after, y_before, y_after], ...]}], "steps", "changes",
        "change_rate"}``.
        """
        if mode not in ("int", "bits"):
            raise CodecError(f"unknown probe mode {mode!r}")
        if not 0 < lines <= 4096 or not 1 < samples <= 1 << 20:
            raise CodecError("probe needs 1..4096 lines of 2..2^20 samples")
        rng = np.random.default_rng(seed)
        n = self.in_bits
        size = 1 << n
        out: list[dict[str, Any]] = []
        steps = changes = 0
        for _ in range(lines):
            start = int(rng.integers(0, size))
            entry: dict[str, Any] = {"start": start}
            if mode == "int":
                step = int(rng.integers(0, size)) | 1
                t = np.arange(samples, dtype=np.uint64)
                xs = (_U64(start) + t * _U64(step)) & _U64(size - 1)
                entry["step"] = step
            else:
                order = rng.permutation(n)
                flips = np.concatenate([[0], np.cumsum(1 << order.astype(np.int64))])
                # Bits are distinct, so the running sum equals the running XOR mask.
                xs = (np.uint64(start) ^ flips.astype(np.uint64)) & _U64(size - 1)
                entry["order"] = order.tolist()
            ys = self.query(xs)
            where = np.flatnonzero(ys[1:] != ys[:-1])
            entry["changes"] = [
                [int(i) + 1, int(xs[i]), int(xs[i + 1]), int(ys[i]), int(ys[i + 1])]
                for i in where.tolist()
            ]
            steps += xs.size - 1
            changes += where.size
            out.append(entry)
        return {
            "mode": mode,
            "lines": out,
            "steps": steps,
            "changes": changes,
            "change_rate": changes / steps if steps else 0.0,
        }

    # --- patches -------------------------------------------------------------------------

    def patch(self, overrides: Mapping[int, int]) -> Emulator:
        """A new emulator (version + 1) answering ``overrides`` for those inputs."""
        merged = dict(zip(self.patches.keys.tolist(), self.patches.values.tolist(), strict=True))
        for x, y in overrides.items():
            x, y = int(x), int(y)
            if not 0 <= x < 1 << self.in_bits:
                raise CodecError(f"patch input {x} outside 0..2^{self.in_bits}-1")
            if not 0 <= y < 1 << self.out_bits:
                raise CodecError(f"patch output {y} does not fit in {self.out_bits} bits")
            merged[x] = y
        keys = np.array(sorted(merged), dtype=np.uint64)
        values = np.array([merged[k] for k in keys.tolist()], dtype=np.uint64)
        return Emulator(
            self.in_bits,
            self.out_bits,
            self.planes,
            output_fixes=self.output_fixes,
            latent_fixes=self.latent_fixes,
            patches=SparseTable(keys, values, 1 << self.in_bits),
            version=self.version + 1,
            meta=self.meta,
            compile_seconds=self.compile_seconds,
            stats=self.stats,
        )

    # --- artifact ------------------------------------------------------------------------

    def _sections(self) -> list[tuple[str, bytes]]:
        verified = self.meta.get("verified", {}).get("inputs", 0)
        meta = [self.in_bits, self.out_bits, self.version, verified, self.meta.get("seed", 0)]
        sections = [
            ("meta", msgpack.packb(meta, use_bin_type=True)),
            ("model", msgpack.packb([p.to_obj() for p in self.planes], use_bin_type=True)),
        ]
        if len(self.latent_fixes):
            sections.append(("latent_fixes", self.latent_fixes.to_bytes()))
        if len(self.output_fixes):
            sections.append(("output_fixes", self.output_fixes.to_bytes()))
        if len(self.patches):
            sections.append(("patches", self.patches.to_bytes()))
        return sections

    def to_bytes(self) -> bytes:
        if self._bytes is None:
            self._bytes = write_container(self._sections())
        return self._bytes

    @property
    def nbytes(self) -> int:
        return len(self.to_bytes())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically: a reader never sees half an artifact."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.to_bytes())
        os.replace(tmp, path)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Emulator:
        sections = read_container(data)
        for name in ("meta", "model"):
            if name not in sections:
                raise CorruptArtifact(f"emulator artifact has no {name!r} section")
        try:
            meta = msgpack.unpackb(
                sections["meta"],
                raw=False,
                max_bin_len=1 << 16,
                max_str_len=1 << 16,
                max_array_len=1 << 12,
                max_map_len=1 << 10,
            )
            planes_obj = msgpack.unpackb(
                sections["model"],
                raw=False,
                max_bin_len=MAX_ARTIFACT_BYTES,
                max_str_len=1 << 10,
                max_array_len=1 << _MAX_PARTITION_BITS,
                max_map_len=1 << 10,
            )
        except (ValueError, msgpack.UnpackException) as exc:
            raise CorruptArtifact(f"emulator artifact has a malformed section: {exc}") from None
        if not isinstance(meta, list) or len(meta) != 5:
            raise CorruptArtifact("emulator artifact meta is malformed")
        n, m, version, verified, seed = meta
        if not isinstance(verified, int) or not isinstance(seed, int):
            raise CorruptArtifact("emulator artifact meta is malformed")
        if not (isinstance(n, int) and 1 <= n <= MAX_IN_BITS):
            raise CorruptArtifact("emulator artifact has a bad input width")
        if not (isinstance(m, int) and 1 <= m <= MAX_OUT_BITS):
            raise CorruptArtifact("emulator artifact has a bad output width")
        if not (isinstance(version, int) and version >= 1):
            raise CorruptArtifact("emulator artifact has a bad version")
        planes = _planes_from_obj(planes_obj, n, m)
        universe = 1 << n
        try:
            fixes = (
                SparseTable.from_bytes(sections["output_fixes"], universe)
                if "output_fixes" in sections
                else SparseTable(np.zeros(0), np.zeros(0), universe)
            )
            latent = (
                SparseTable.from_bytes(sections["latent_fixes"], universe)
                if "latent_fixes" in sections
                else None
            )
            patches = (
                SparseTable.from_bytes(sections["patches"], universe)
                if "patches" in sections
                else None
            )
        except PayloadTooBig:
            raise
        except CorruptArtifact as exc:
            raise CorruptArtifact(f"emulator artifact: {exc}") from None
        if fixes.values.size and int(fixes.values.max()) >> m:
            raise CorruptArtifact("emulator artifact has fixes wider than its output")
        if patches is not None and patches.values.size and int(patches.values.max()) >> m:
            raise CorruptArtifact("emulator artifact has patches wider than its output")
        extra: dict[str, Any] = {"seed": seed}
        if verified:
            if verified != universe:
                raise CorruptArtifact("emulator artifact claims a partial verified domain")
            extra["verified"] = {"kind": "exhaustive", "inputs": verified}
        emu = cls(
            n,
            m,
            planes,
            output_fixes=fixes,
            latent_fixes=latent,
            patches=patches,
            version=version,
            meta=extra,
        )
        emu._bytes = bytes(data)
        return emu

    # --- review regions ------------------------------------------------------------------

    def review_regions(self, limit: int = REVIEW_LIMIT) -> list[dict[str, Any]]:
        """Input ranges a human should look at first, at most ``limit`` of them.

        The domain is cut into ``min(2^in_bits, REVIEW_WINDOWS)`` equal windows::

            [0 ........ 2^n)  ─► windows ─► fixes per window  (output + latent, exact)
                                       └──► mean decision margin (``uncertainty``'s
                                            model term, on up to 256 evenly spaced inputs)
            top limit/2 by fix density  ∪  top limit/2 by mean margin  (nonzero only)

        Each region: ``start``, ``end`` (exclusive), ``fixes``, ``mean_uncertainty``,
        ``heuristic`` (kinds serving the window, ``+``-joined) and ``reason``
        (``"fix_density"`` or ``"low_margin"``). Empty when every answer is exact
        structure with no fixes.
        """
        if limit == REVIEW_LIMIT and self._review is not None:
            return self._review
        n = self.in_bits
        count = min(1 << n, REVIEW_WINDOWS)
        span = (1 << n) // count
        edges = np.arange(count + 1, dtype=np.uint64) * _U64(span)
        fixes = np.zeros(count, dtype=np.int64)
        for table in (self.output_fixes, self.latent_fixes):
            if len(table):
                fixes += np.diff(np.searchsorted(table.keys, edges))
        samples = min(span, _REVIEW_SAMPLES)
        offsets = (np.arange(samples, dtype=np.uint64) * _U64(span // samples))[None, :]
        xs = (edges[:-1, None] + offsets).reshape(-1)
        margin = np.zeros(xs.size, dtype=np.float64)
        for plane in self.planes:
            if not all(m.exact for m in plane.models):
                margin = np.maximum(margin, np.clip(plane.margin(xs), 0.0, 1.0))
        mean = margin.reshape(count, samples).mean(axis=1)
        half = max(1, limit // 2)
        chosen: dict[int, str] = {}
        for i in np.argsort(-fixes, kind="stable")[:half].tolist():
            if fixes[i] > 0:
                chosen.setdefault(i, "fix_density")
        for i in np.argsort(-mean, kind="stable")[: limit - len(chosen)].tolist():
            if mean[i] > 0 and len(chosen) < limit:
                chosen.setdefault(i, "low_margin")
        regions = []
        for i, reason in chosen.items():
            start, end = i * span, (i + 1) * span
            kinds: list[str] = []
            for plane in self.planes:
                first, last = start >> plane.d, (end - 1) >> plane.d
                for model in plane.models[first : last + 1]:
                    if model.kind not in kinds:
                        kinds.append(model.kind)
            regions.append(
                {
                    "start": start,
                    "end": end,
                    "fixes": int(fixes[i]),
                    "mean_uncertainty": round(float(mean[i]), 4),
                    "heuristic": "+".join(kinds),
                    "reason": reason,
                }
            )
        if limit == REVIEW_LIMIT:
            self._review = regions
        return regions

    # --- report --------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        n, m = self.in_bits, self.out_bits
        cells: dict[str, float] = {}
        partitions = []
        for plane in self.planes:
            kinds: dict[str, int] = {}
            for model in plane.models:
                kinds[model.kind] = kinds.get(model.kind, 0) + 1
                cells[model.kind] = cells.get(model.kind, 0.0) + plane.w / len(plane.models)
            partitions.append(
                {
                    "out_bits": [plane.lo, plane.lo + plane.w],
                    "partition_bits": plane.k,
                    "partitions": len(plane.models),
                    "heuristics": kinds,
                }
            )
        sections = {name: len(payload) for name, payload in self._sections()}
        return {
            "codec_version": CODEC_VERSION,
            "in_bits": n,
            "out_bits": m,
            "version": self.version,
            "bytes": {"total": self.nbytes, "sections": sections},
            "fixes": {
                "latent_fixes": len(self.latent_fixes),
                "output_fixes": len(self.output_fixes),
            },
            "partitions": partitions,
            # Share of (input, output bit) cells each heuristic answers.
            "shares": {k: v / m for k, v in sorted(cells.items())},
            "exact_share": sum(v for k, v in cells.items() if k in EXACT_KINDS) / m,
            "compile_seconds": self.compile_seconds,
            "verified": self.meta.get("verified", {"kind": "none", "inputs": 0}),
            "patches": len(self.patches),
            "review_regions": self.review_regions(),
            **({"compile": self.stats} if self.stats else {}),
        }


def _planes_from_obj(obj: Any, n: int, m: int) -> list[Plane]:
    if not isinstance(obj, list) or not 0 < len(obj) <= _MAX_PLANES:
        raise CorruptArtifact("emulator artifact model is not a list of planes")
    planes: list[Plane] = []
    covered = 0
    for entry in obj:
        if not isinstance(entry, list) or len(entry) != 4:
            raise CorruptArtifact("emulator artifact has a malformed plane")
        lo, w, k, models = entry
        if not all(isinstance(v, int) for v in (lo, w, k)) or not isinstance(models, list):
            raise CorruptArtifact("emulator artifact has a malformed plane")
        if not (0 <= lo and 1 <= w and lo + w <= m and 0 <= k <= min(n, _MAX_PARTITION_BITS)):
            raise CorruptArtifact("emulator artifact has a plane out of range")
        bits = ((1 << w) - 1) << lo
        if covered & bits:
            raise CorruptArtifact("emulator artifact planes overlap")
        covered |= bits
        if len(models) != 1 << k:
            raise CorruptArtifact("emulator artifact plane has the wrong number of partitions")
        d = n - k
        try:
            built = [model_from_obj(mo, d, w) for mo in models]
        except CorruptArtifact:
            raise
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            raise CorruptArtifact(f"emulator artifact has a malformed model: {exc}") from None
        planes.append(Plane(lo, w, k, d, built))
    return planes


def load_emulator(path: str | os.PathLike[str]) -> Emulator:
    """Read and check a ``.emu`` file (CorruptArtifact on any defect)."""
    p = Path(path)
    size = p.stat().st_size
    if size > MAX_ARTIFACT_BYTES:
        raise PayloadTooBig(f"{p} is {size} bytes, past the artifact limit")
    return Emulator.from_bytes(p.read_bytes())
