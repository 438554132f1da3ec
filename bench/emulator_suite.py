"""Emulator suite benchmark: compiled emulators against every classical baseline.

Runnable alone::

    python bench/emulator_suite.py [--only NAME ...] [--json out.json] [--markdown F.md]

For each suite function (``simulacra.codecs.emulator.examples.SUITE``), in one run::

    truth table ─┬─► baselines (bench/baselines.py) ─────────────────┐
                 └─► compile_emulator ─► emu ─┬─► bytes per section  ├─► ratios, tables
                                              ├─► exact on all 2^n   │
                                              ├─► save ─► fresh process: sha256 of all outputs
                                              ├─► 1-query µs, batched queries/s vs the Python
                                              │   function and a dense numpy gather
                                              └─► ablations: neural only, output fixes only

The full suite writes ``docs/benchmarks.md`` (``--markdown`` to choose) and
``docs/benchmarks.json`` (``--json``). Ratios below 1 mean the emulator is smaller.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import COLUMNS, EXTRA_COLUMNS, RANDOM_ACCESS, baseline_bytes  # noqa: E402
from simulacra.codecs.emulator.examples import SUITE, SuiteFunction, truth_table  # noqa: E402

# Ablation name -> compile_emulator keyword arguments; run only where the codec has them.
# "neural only" keeps the learned decoders (the codec always keeps ``packed`` as the
# last resort); "output fixes only" leaves every decoder miss to output_fixes; "neural,
# no latent" is both at once, so neural_only against it prices the latent fixes alone.
ABLATIONS: dict[str, dict[str, Any]] = {
    "neural_only": {"heuristics": ("mlp",)},
    "output_fixes_only": {"latent_fixes": False},
    "neural_no_latent": {"heuristics": ("mlp",), "latent_fixes": False},
}
NEURAL_KINDS = ("mlp",)
QUERY_CHUNK = 1 << 20
# Issue 3's targets (measured here, never asserted in tests).
TARGET_COMPILE_S = {16: 60.0, 26: 600.0}  # by in_bits: up to 16, up to 26
TARGET_BATCHED_QPS = 20e6
TARGET_SINGLE_US = 20.0
TARGET_RANDOM_SLACK = 1.01  # random16 may exceed the packed table by 1%

# Runs in a fresh interpreter: load the artifact, answer every input, hash the answers.
_FRESH_CHECK = """
import hashlib, sys
import numpy as np
from simulacra.codecs.emulator import load_emulator
emu = load_emulator(sys.argv[1])
n = 1 << int(sys.argv[2])
h = hashlib.sha256()
for start in range(0, n, 1 << 20):
    xs = np.arange(start, min(n, start + (1 << 20)), dtype=np.uint64)
    h.update(np.asarray(emu.query(xs), dtype="<u8").tobytes())
print(h.hexdigest())
"""


def _sha256_table(table: np.ndarray) -> str:
    return hashlib.sha256(table.astype("<u8").tobytes()).hexdigest()


def _progress(desc: str) -> Any:
    """A ``progress(stage, done, total)`` callback drawing one tqdm bar per stage."""
    from tqdm import tqdm

    state: dict[str, Any] = {"stage": None, "bar": None}

    def callback(stage: str, done: int, total: int) -> None:
        if stage != state["stage"]:
            if state["bar"] is not None:
                state["bar"].close()
            state["stage"] = stage
            state["bar"] = tqdm(
                total=total or None,
                desc=f"{desc} {stage}",
                leave=False,
                file=sys.stderr,
                disable=None,
            )
        bar = state["bar"]
        if total and bar.total != total:
            bar.total = total
        bar.update(max(0, done - bar.n))

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()

    callback.close = close  # type: ignore[attr-defined]
    return callback


def _compile(codec: Any, s: SuiteFunction, extra: dict[str, Any]) -> tuple[Any, float]:
    progress = _progress(s.name + ("" if not extra else " " + ",".join(extra)))
    t0 = time.perf_counter()
    try:
        emu = codec.compile_emulator(
            s.fn, s.in_bits, s.out_bits, vectorized=True, seed=0, progress=progress, **extra
        )
    finally:
        progress.close()
    return emu, time.perf_counter() - t0


def _exact(emu: Any, table: np.ndarray) -> bool:
    for start in range(0, len(table), QUERY_CHUNK):
        xs = np.arange(start, min(len(table), start + QUERY_CHUNK), dtype=np.uint64)
        if not np.array_equal(np.asarray(emu.query(xs), dtype=np.uint64), table[start:][: len(xs)]):
            return False
    return True


def _fresh_process_exact(emu: Any, in_bits: int, expected: str) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.emu"
        emu.save(path)
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        res = subprocess.run(
            [sys.executable, "-c", _FRESH_CHECK, str(path), str(in_bits)],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
        )
    if res.returncode != 0:
        print(f"  fresh-process check failed: {res.stderr.strip()[-300:]}", file=sys.stderr)
        return False
    return res.stdout.strip() == expected


def _best_rate(fn: Any, count: int, repeats: int = 3) -> float:
    """Items per second, best of ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return count / best if best > 0 else float("inf")


def _speeds(emu: Any, s: SuiteFunction, table: np.ndarray) -> dict[str, float]:
    rng = np.random.default_rng(1)
    size = 1 << s.in_bits
    batch = rng.integers(0, size, 1 << 20, dtype=np.uint64)
    batch_idx = batch.astype(np.intp)
    singles = [int(x) for x in rng.integers(0, size, 2000)]
    py_inputs = [int(x) for x in rng.integers(0, size, 100_000)]

    emu(singles[0])  # warm caches and lazy tables before timing
    single_rate = _best_rate(lambda: [emu(x) for x in singles], len(singles))
    emu_rate = _best_rate(lambda: emu.query(batch), len(batch))
    fn_py = s.fn_py
    py_rate = _best_rate(lambda: [fn_py(x) for x in py_inputs], len(py_inputs), repeats=2)
    dense_rate = _best_rate(lambda: table[batch_idx], len(batch))
    return {
        "single_query_us": 1e6 / single_rate,
        "batched_qps": emu_rate,
        "python_fn_cps": py_rate,
        "dense_table_lps": dense_rate,
        "vs_python_fn": emu_rate / py_rate,
        "vs_dense_table": emu_rate / dense_rate,
    }


def _supported(codec: Any, kwargs: dict[str, Any]) -> bool:
    params = inspect.signature(codec.compile_emulator).parameters
    return all(k in params for k in kwargs) or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def targets(name: str, r: dict[str, Any]) -> dict[str, bool]:
    """Which of issue 3's targets one function's results meet."""
    size_limit = r["best_random_access"]["bytes"]
    if name == "random16":
        size_limit = max(size_limit, int(r["baselines"]["packed"] * TARGET_RANDOM_SLACK))
    compile_limit = TARGET_COMPILE_S[16 if r["in_bits"] <= 16 else 26]
    return {
        "exact": bool(r["exact"] and r["exact_fresh_process"]),
        "size": r["emulator_bytes"] <= size_limit,
        "moonshot": r["emulator_bytes"] <= r["best_of_all"]["bytes"] / 2,
        "compile": r["compile_seconds"] <= compile_limit,
        "batched": r["batched_qps"] >= TARGET_BATCHED_QPS,
        "single_query": r["single_query_us"] <= TARGET_SINGLE_US,
    }


def run_one(codec: Any, name: str, *, ablations: bool) -> dict[str, Any]:
    s = SUITE[name]
    print(f"{name}: truth table and baselines", file=sys.stderr)
    table = truth_table(s.fn, s.in_bits)
    t0 = time.perf_counter()
    base = baseline_bytes(table, s.in_bits, s.out_bits)
    baseline_seconds = time.perf_counter() - t0
    best_ra = min(RANDOM_ACCESS, key=lambda c: base[c])
    best_all = min(COLUMNS, key=lambda c: base[c])
    result: dict[str, Any] = {
        "in_bits": s.in_bits,
        "out_bits": s.out_bits,
        "baselines": base,
        "baseline_seconds": baseline_seconds,
        "best_random_access": {"column": best_ra, "bytes": base[best_ra]},
        "best_of_all": {"column": best_all, "bytes": base[best_all]},
    }
    if codec is None:
        return result
    print(f"{name}: compiling", file=sys.stderr)
    emu, seconds = _compile(codec, s, {})
    report = emu.report()
    nbytes = int(emu.nbytes)
    result.update(
        {
            "emulator_bytes": nbytes,
            "sections": report.get("bytes", {}).get("sections", {}),
            "shares": report.get("shares", {}),
            "neural_share": sum(report.get("shares", {}).get(k, 0.0) for k in NEURAL_KINDS),
            "fixes": report.get("fixes", {}),
            "ratio_best_random_access": nbytes / base[best_ra],
            "ratio_best_of_all": nbytes / base[best_all],
            "ratio_packed": nbytes / base["packed"],
            "compile_seconds": seconds,
        }
    )
    print(f"{name}: checking all {1 << s.in_bits:,} inputs", file=sys.stderr)
    result["exact"] = _exact(emu, table)
    result["exact_fresh_process"] = _fresh_process_exact(emu, s.in_bits, _sha256_table(table))
    result.update(_speeds(emu, s, table))
    result["targets"] = targets(name, result)
    if ablations:
        result["ablations"] = {}
        for label, kwargs in ABLATIONS.items():
            if not _supported(codec, kwargs):
                result["ablations"][label] = {"skipped": f"compile_emulator lacks {kwargs}"}
                continue
            print(f"{name}: ablation {label}", file=sys.stderr)
            try:
                ab, ab_seconds = _compile(codec, s, kwargs)
            except TypeError as exc:  # a switch the codec does not take after all
                result["ablations"][label] = {"skipped": str(exc)}
                continue
            ab_report = ab.report()
            result["ablations"][label] = {
                "bytes": int(ab.nbytes),
                "ratio_to_full": int(ab.nbytes) / nbytes,
                "exact": _exact(ab, table),
                "compile_seconds": ab_seconds,
                "fixes": ab_report.get("fixes", {}),
                "shares": ab_report.get("shares", {}),
            }
    return result


# Realistic app segments where a learned decoder had its best chance (rasters, a CA rule).
APP_SEGMENTS: dict[str, tuple[str, str, int, int]] = {
    "glyph2048": ("simulacra.apps.font", "glyph_reference", 15, 4),
    "viewer_glyph": ("simulacra.apps.viewer", "viewer_glyph_reference", 14, 4),
    "sand_rule": ("simulacra.apps.sand", "sand_rule_reference", 20, 2),
}


def run_segments(codec: Any) -> dict[str, dict[str, Any]]:
    """Full compile vs the ablations on the app segments (bytes, shares, fixes, exact)."""
    import importlib

    out: dict[str, dict[str, Any]] = {}
    for name, (module, func, n, m) in APP_SEGMENTS.items():
        fn = getattr(importlib.import_module(module), func)
        table = truth_table(fn, n)
        row: dict[str, Any] = {"in_bits": n, "out_bits": m, "packed": ((1 << n) * m + 7) // 8}
        for label, kwargs in {"full": {}, **ABLATIONS}.items():
            print(f"segment {name}: {label}", file=sys.stderr)
            t0 = time.perf_counter()
            emu = codec.compile_emulator(fn, n, m, vectorized=True, seed=0, **kwargs)
            rep = emu.report()
            row[label] = {
                "bytes": int(emu.nbytes),
                "shares": rep.get("shares", {}),
                "fixes": rep.get("fixes", {}),
                "exact": _exact(emu, table),
                "compile_seconds": time.perf_counter() - t0,
            }
        out[name] = row
    return out


def _latent_sentence(rows: dict[str, dict[str, Any]], segments: dict[str, dict[str, Any]]) -> str:
    pairs = []
    for name, r in {**rows, **segments}.items():
        ab = r.get("ablations", r)
        with_latent = ab.get("neural_only", {})
        without = ab.get("neural_no_latent", {})
        if "bytes" not in with_latent or "bytes" not in without:
            continue
        if with_latent.get("shares", {}).get("mlp", 0.0) == 0.0:
            continue
        pairs.append(f"{name} {_n(with_latent['bytes'])} vs {_n(without['bytes'])}")
    if not pairs:
        return ""
    same = all(a == b for a, b in (p.split(" ", 1)[1].split(" vs ") for p in pairs))
    verdict = (
        "identical everywhere: every miss takes exactly one fix either way, and a latent "
        "fix is as wide as an output fix, so the latent stage buys nothing yet. "
        if same
        else "they differ, so the latent stage matters where a network is used. "
    )
    return (
        "Where a network is forced (neural_only), latent fixes against output fixes only "
        f"(neural_no_latent), in bytes: {'; '.join(pairs)}; {verdict}"
    )


def _glyph_sentence(segments: dict[str, dict[str, Any]]) -> str:
    glyphs = {n: r for n, r in segments.items() if "glyph" in n}
    if not glyphs:
        return ""
    pairs = "; ".join(
        f"{n}: {_n(r['neural_only']['fixes'].get('latent_fixes', 0))} latent fixes under the "
        f"network vs {_n(r['full']['fixes'].get('output_fixes', 0))} output fixes under "
        f"{'+'.join(r['full']['shares'])}"
        for n, r in glyphs.items()
    )
    return (
        f"On the glyph rasters ({pairs}) the network has to be corrected on about as many "
        "inputs as the structural model, and its weights come on top: it learns little "
        "that sparse exact fixes do not already store more cheaply."
    )


def _interpretation(
    results: dict[str, dict[str, Any]], segments: dict[str, dict[str, Any]]
) -> list[str]:
    """A paragraph that reads the ablation numbers of this run (no claims beyond them)."""
    rows = {n: r for n, r in results.items() if "ablations" in r}
    neural_rows = [n for n, r in rows.items() if r.get("neural_share", 0.0) > 0]
    latent_rows = [
        n
        for n, r in rows.items()
        if r["ablations"].get("output_fixes_only", {}).get("bytes", r["emulator_bytes"])
        != r["emulator_bytes"]
    ]
    nn_wins = [
        n
        for n, r in {**rows, **segments}.items()
        if r.get("neural_only", r.get("ablations", {}).get("neural_only", {})).get("bytes", 1 << 62)
        < r.get("full", {}).get("bytes", r.get("emulator_bytes", 0))
    ]
    seg_neural = [n for n, r in segments.items() if r["full"]["shares"].get("mlp", 0.0) > 0]
    ratios = [
        r["ablations"]["neural_only"]["ratio_to_full"]
        for r in rows.values()
        if "bytes" in r["ablations"].get("neural_only", {})
    ]
    seg_ratios = [r["neural_only"]["bytes"] / r["full"]["bytes"] for r in segments.values()]
    text = (
        f"**Interpretation.** The learned decoder serves {len(neural_rows)} of {len(rows)} suite "
        f"rows{' (' + ', '.join(neural_rows) + ')' if neural_rows else ''} and "
        f"{len(seg_neural)} of {len(segments)} app segments in the full compile. "
        "Restricted to neural decoders, every row costs "
        + (
            f"{min(ratios + seg_ratios):.2f}× to {max(ratios + seg_ratios):,.0f}× the full emulator"
            if ratios + seg_ratios
            else "n/a"
        )
        + "; "
        + (
            "a neural-only compile is never smaller than the full search, so the structural "
            "heuristics (const + output fixes on glyph rasters, level tables on the sand rule "
            "and 2048's row) carry everything. "
            if not nn_wins
            else f"neural-only is smaller than the full compile on {', '.join(nn_wins)} "
            "(a search gap to fix). "
        )
        + (
            "Latent fixes change no size: disabling them (output_fixes_only) gives identical "
            "bytes on every row, because no compile keeps a neural decoder, and only a neural "
            "plane has latent bits to flip. "
            if not latent_rows
            else f"Latent fixes change the size of {', '.join(latent_rows)}. "
        )
        + _latent_sentence(rows, segments)
        + _glyph_sentence(segments)
    )
    return ["", text]


# --- output -----------------------------------------------------------------------


def _n(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "**NO**"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.3g}" if v < 1000 else f"{v:,.0f}"
    return str(v)


def _rate(v: float) -> str:
    return f"{v / 1e6:,.2f} M/s"


def render_markdown(
    results: dict[str, dict[str, Any]],
    machine: dict[str, Any],
    segments: dict[str, dict[str, Any]] | None = None,
) -> str:
    out = [
        "# Emulator benchmark",
        "",
        "Generated by `bench/emulator_suite.py`; every figure below was measured in one run on "
        f"{machine['machine']} ({machine['cpus']} CPUs, Python {machine['python']}, "
        f"{machine['date']}, commit {machine['commit'] or '?'}). Size ratios below 1 mean "
        "the emulator is smaller; speed factors (×) above 1 mean it is faster.",
        "",
        "## Size",
        "",
        "| function | n→m | emulator bytes | best random-access baseline | ratio | "
        "best of all columns | ratio | exact | exact after reload (fresh process) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ra, al = r["best_random_access"], r["best_of_all"]
        emu = r.get("emulator_bytes")
        out.append(
            f"| {name} | {r['in_bits']}→{r['out_bits']} | {_n(emu) if emu else '—'} | "
            f"{_n(ra['bytes'])} ({ra['column']}) | "
            f"{_n(r['ratio_best_random_access']) if emu else '—'} | "
            f"{_n(al['bytes'])} ({al['column']}) | {_n(r['ratio_best_of_all']) if emu else '—'} | "
            f"{_n(r['exact']) if emu else '—'} | {_n(r['exact_fresh_process']) if emu else '—'} |"
        )
    out += [
        "",
        "## Speed",
        "",
        "| function | compile s | one query µs | batched queries/s | Python function calls/s | "
        "× Python function | dense numpy gather lookups/s | × dense table |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "emulator_bytes" not in r:
            continue
        out.append(
            f"| {name} | {r['compile_seconds']:.1f} | {r['single_query_us']:.1f} | "
            f"{_rate(r['batched_qps'])} | {_rate(r['python_fn_cps'])} | "
            f"{r['vs_python_fn']:.2f} | {_rate(r['dense_table_lps'])} | {r['vs_dense_table']:.3f} |"
        )
    scored = {n: r["targets"] for n, r in results.items() if "targets" in r}
    if scored:
        labels = list(next(iter(scored.values())))
        out += [
            "",
            "## Targets (issue 3)",
            "",
            "exact: every input, also reloaded in a fresh process; size: ≤ best random-access "
            f"baseline (random16: ≤ packed + {TARGET_RANDOM_SLACK - 1:.0%}); moonshot: ≤ half "
            f"the best of all columns; compile: ≤ {TARGET_COMPILE_S[16]:.0f} s for 16-bit "
            f"inputs, ≤ {TARGET_COMPILE_S[26]:.0f} s above; batched: ≥ "
            f"{TARGET_BATCHED_QPS / 1e6:.0f} M queries/s; single query: ≤ "
            f"{TARGET_SINGLE_US:.0f} µs.",
            "",
            "| function | " + " | ".join(labels) + " |",
            "|---|" + "---|" * len(labels),
        ]
        for name, t in scored.items():
            out.append(
                f"| {name} | " + " | ".join("met" if t[k] else "**missed**" for k in labels) + " |"
            )
        met = {k: sum(t[k] for t in scored.values()) for k in labels}
        out.append("| **met** | " + " | ".join(f"{met[k]}/{len(scored)}" for k in labels) + " |")
    out += [
        "",
        "## Classical baselines (bytes, this run)",
        "",
        "| function | " + " | ".join(COLUMNS + EXTRA_COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS + EXTRA_COLUMNS),
    ]
    for name, r in results.items():
        cells = " | ".join(_n(r["baselines"][c]) for c in COLUMNS + EXTRA_COLUMNS)
        out.append(f"| {name} | {cells} |")
    out.append(
        "\n`bdd_serialized` is the same diagram as `bdd` stored by "
        "`simulacra.codecs.emulator.bdd` (level-relative pointer widths); it is shown for "
        "reference and not used as a best baseline."
    )
    sections = sorted({k for r in results.values() for k in r.get("sections", {})})
    if sections:
        out += [
            "",
            "## Emulator bytes per section",
            "",
            "| function | " + " | ".join(sections) + " | heuristic shares |",
            "|---|" + "---|" * (len(sections) + 1),
        ]
        for name, r in results.items():
            if "sections" not in r:
                continue
            shares = ", ".join(f"{k} {v:.0%}" for k, v in r.get("shares", {}).items())
            out.append(
                f"| {name} | "
                + " | ".join(_n(r["sections"].get(s, 0)) for s in sections)
                + f" | {shares} |"
            )
    if any("ablations" in r for r in results.values()):
        out += [
            "",
            "## Ablations (bytes; ratio to the full emulator)",
            "",
            "neural_only: learned decoders only, no structural heuristics (packed stays as "
            "the last resort); output_fixes_only: no latent fixes, every miss is an output fix; "
            "neural_no_latent: both (neural_only against it is the value of latent fixes).",
            "",
            "| function | full | neural share | latent / output fixes | "
            + " | ".join(ABLATIONS)
            + " |",
            "|---|---|---|---|" + "---|" * len(ABLATIONS),
        ]
        for name, r in results.items():
            if "ablations" not in r:
                continue
            cells = []
            for label in ABLATIONS:
                a = r["ablations"].get(label, {})
                if "bytes" in a:
                    flag = "" if a["exact"] else ", NOT exact"
                    fx = a.get("fixes", {})
                    fixes = f", {_n(fx.get('latent_fixes', 0))} / {_n(fx.get('output_fixes', 0))}"
                    cells.append(f"{_n(a['bytes'])} ({a['ratio_to_full']:.2f}×{flag}{fixes})")
                else:
                    cells.append("skipped")
            fx = r.get("fixes", {})
            out.append(
                f"| {name} | {_n(r['emulator_bytes'])} | {r.get('neural_share', 0.0):.0%} | "
                f"{_n(fx.get('latent_fixes', 0))} / {_n(fx.get('output_fixes', 0))} | "
                + " | ".join(cells)
                + " |"
            )
    if segments:
        labels = ["full", *ABLATIONS]
        out += [
            "",
            "## App segments (bytes; heuristic shares; latent / output fixes)",
            "",
            "| segment | n→m | packed | " + " | ".join(labels) + " |",
            "|---|---|---|" + "---|" * len(labels),
        ]
        for name, r in segments.items():
            cells = []
            for label in labels:
                a = r[label]
                shares = ", ".join(f"{k} {v:.0%}" for k, v in a["shares"].items())
                fx = a["fixes"]
                flag = "" if a["exact"] else ", NOT exact"
                cells.append(
                    f"{_n(a['bytes'])} ({shares}; {_n(fx.get('latent_fixes', 0))} / "
                    f"{_n(fx.get('output_fixes', 0))}{flag})"
                )
            out.append(
                f"| {name} | {r['in_bits']}→{r['out_bits']} | {_n(r['packed'])} | "
                + " | ".join(cells)
                + " |"
            )
    if any("ablations" in r for r in results.values()):
        out += _interpretation(results, segments or {})
    return "\n".join(out) + "\n"


def _print_summary(results: dict[str, dict[str, Any]]) -> None:
    head = (
        f"{'function':<11} {'emu bytes':>10} {'best RA':>10} {'ratio':>7} "
        f"{'best all':>9} {'ratio':>7} {'exact':>6} {'fresh':>6} {'compile':>8} "
        f"{'1q µs':>7} {'Mq/s':>7} {'×py':>7} {'×dense':>7}"
    )
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        ra, al = r["best_random_access"]["bytes"], r["best_of_all"]["bytes"]
        if "emulator_bytes" not in r:
            print(f"{name:<11} {'—':>10} {ra:>10,} {'—':>7} {al:>9,}")
            continue
        print(
            f"{name:<11} {r['emulator_bytes']:>10,} {ra:>10,} "
            f"{r['ratio_best_random_access']:>7.3f} {al:>9,} {r['ratio_best_of_all']:>7.3f} "
            f"{str(r['exact']):>6} {str(r['exact_fresh_process']):>6} "
            f"{r['compile_seconds']:>7.1f}s {r['single_query_us']:>7.1f} "
            f"{r['batched_qps'] / 1e6:>7.2f} {r['vs_python_fn']:>7.1f} {r['vs_dense_table']:>7.3f}"
        )


def _machine() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SUITE), metavar="NAME")
    parser.add_argument("--json", type=Path, help="JSON results (default docs/benchmarks.json)")
    parser.add_argument(
        "--markdown", type=Path, help="markdown table (default docs/benchmarks.md, full suite only)"
    )
    parser.add_argument("--no-ablations", action="store_true", help="skip the ablation compiles")
    parser.add_argument(
        "--baselines-only", action="store_true", help="measure baselines, compile nothing"
    )
    args = parser.parse_args(argv)

    codec: Any = None
    if not args.baselines_only:
        try:
            import simulacra.codecs.emulator as codec
        except ImportError as exc:
            print(f"emulator codec unavailable ({exc}); baselines only", file=sys.stderr)
        if codec is not None and not hasattr(codec, "compile_emulator"):
            print("emulator codec has no compile_emulator yet; baselines only", file=sys.stderr)
            codec = None

    names = args.only or list(SUITE)
    results = {n: run_one(codec, n, ablations=not args.no_ablations) for n in names}
    segments = (
        run_segments(codec) if codec is not None and not args.no_ablations and not args.only else {}
    )
    machine = _machine()
    _print_summary(results)

    json_path = args.json or (None if args.only else ROOT / "docs" / "benchmarks.json")
    md_path = args.markdown or (None if args.only else ROOT / "docs" / "benchmarks.md")
    if json_path:
        json_path.write_text(
            json.dumps({"machine": machine, "functions": results, "segments": segments}, indent=2)
        )
        print(f"wrote {json_path}", file=sys.stderr)
    if md_path:
        md_path.write_text(render_markdown(results, machine, segments))
        print(f"wrote {md_path}", file=sys.stderr)
    if codec is None:
        return 0
    return 0 if all(r["exact"] and r["exact_fresh_process"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
