"""Apps benchmark: each app run through its emulators, its reference code and dense tables.

Runnable alone::

    python bench/apps.py [--steps N] [--data DIR] [--json OUT] [--apps 2048 sand]

Per app, in one run, over the same seeded script (2048: random arrow keys, Enter
when the game is over; sand: clock ticks with pointer pours and material picks)::

    script ─┬─► app(emulated runner)  load_or_compile_segments (cached in --data)
            ├─► app(reference runner) each segment's reference code
            └─► app(dense runner)     np.take over each segment's full truth table
                     │   steps interleaved, runner order rotated every step
                     ▼
            step time, step + render time, crc32 of every framebuffer
                     ▼
            all three checksums equal at every step, or MISMATCH and exit 1

    per segment: emulator bytes vs packed table ceil(2^n · m / 8); queries/s of the
    segment alone for the three runners, replaying batches the app really sent

The printed key figures are ratios measured in this run: emulated / reference and
emulated / dense (above 1: the emulators are slower or larger).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import packed_bytes  # noqa: E402
from simulacra.apps import APP_NAMES, get_app  # noqa: E402
from simulacra.apps.base import App, InputEvent, Segment, reference_runner  # noqa: E402
from simulacra.apps.emulation import EmulatedRunner, load_or_compile_segments  # noqa: E402
from simulacra.codecs.display import framebuffer_checksum  # noqa: E402
from simulacra.codecs.emulator import CODEC_VERSION  # noqa: E402

__all__ = [
    "RUNNERS",
    "dense_runner",
    "script_events",
    "run_ticks",
    "segment_speed",
    "bench_app",
    "main",
]

SegmentFn = Callable[[np.ndarray], np.ndarray]

RUNNERS = ("emulated", "reference", "dense")
DEFAULT_STEPS = {"2048": 500, "sand": 300}
QPS_MIN_SECONDS = 0.3  # per runner and batch size: long enough for a stable rate
QPS_ROUNDS = 5
QPS_BATCH_SIZES = 3  # the batch sizes carrying the most queries, per segment
RECORDED_BATCHES = 32  # kept per (segment, batch size) to replay
_ARROWS = ("ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown")


class MismatchError(Exception):
    """Two runners disagreed: a framebuffer or a segment's outputs differ."""


def dense_runner(segments: tuple[Segment, ...]) -> dict[str, SegmentFn]:
    """The dense baseline: every segment answered by ``np.take`` over its full truth table.

    Tables hold uint64 (8 bytes an entry, not the packed size): the fastest gather,
    with no cast on the way out.
    """
    runner: dict[str, SegmentFn] = {}
    for s in segments:
        table = np.ascontiguousarray(
            np.asarray(s.reference(np.arange(1 << s.in_bits, dtype=np.uint64)), dtype=np.uint64)
        )

        def take(codes: np.ndarray, table: np.ndarray = table) -> np.ndarray:
            return np.take(table, np.asarray(codes, dtype=np.intp))

        runner[s.name] = take
    return runner


def script_events(app: str, seed: int) -> Iterator[InputEvent | None]:
    """The seeded input script: an endless stream of events (None = a clock tick)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    if app == "2048":
        while True:
            yield InputEvent("key", _ARROWS[int(rng.integers(4))])
    from simulacra.apps.sand import GRID_H, SCALE

    width = get_app(app).width
    x, y = width // 2, GRID_H * SCALE // 4
    while True:
        r = float(rng.random())
        if r < 0.70:
            yield None
        elif r < 0.95:
            # The pointer wanders, pouring as it goes (a drag with the button held).
            x = int(np.clip(x + rng.integers(-24, 25), 0, width - 1))
            y = int(np.clip(y + rng.integers(-16, 17), 0, GRID_H * SCALE - 1))
            yield InputEvent("pointer", x=x, y=y, buttons=1)
        else:
            yield InputEvent("key", ("1", "2", "3")[int(rng.integers(3))])


def _adapt(state: Any, event: InputEvent | None) -> InputEvent | None:
    """A lost game restarts (Enter) instead of taking the script's next key.

    Depends on the state only, so runners that agree on it still get the same events.
    """
    if event is not None and event.kind == "key" and getattr(state, "over", False):
        return InputEvent("key", "Enter")
    return event


def _stats(ns: list[int]) -> dict[str, float]:
    ms = np.asarray(ns, dtype=np.float64) / 1e6
    return {
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
    }


def run_ticks(
    app_cls: type[App], runners: Mapping[str, Mapping[str, SegmentFn]], steps: int, seed: int
) -> dict[str, Any]:
    """Play the script on one app per runner, steps interleaved; time and checksum each."""
    apps = {name: app_cls(runner) for name, runner in runners.items()}
    states = {name: app.reset(seed) for name, app in apps.items()}
    order = list(apps)
    step_ns: dict[str, list[int]] = {name: [] for name in apps}
    tick_ns: dict[str, list[int]] = {name: [] for name in apps}
    kinds: list[str] = []
    script = script_events(app_cls.name, seed)
    first_mismatch: dict[str, Any] | None = None
    events: dict[str, int] = {}
    last = 0
    clock = time.perf_counter_ns
    for i in range(steps):
        scripted = next(script)
        sums: dict[str, int] = {}
        for name in order[i % len(order) :] + order[: i % len(order)]:
            app, state = apps[name], states[name]
            event = _adapt(state, scripted)
            t0 = clock()
            state = app.step(state, event)
            t1 = clock()
            fb = app.render(state)
            t2 = clock()
            states[name] = state
            step_ns[name].append(t1 - t0)
            tick_ns[name].append(t2 - t0)
            sums[name] = framebuffer_checksum(fb)
        kind = "tick" if event is None else event.kind
        events[kind] = events.get(kind, 0) + 1
        kinds.append(kind)
        if len(set(sums.values())) != 1 and first_mismatch is None:
            first_mismatch = {"step": i, "checksums": sums}
        last = sums[order[0]]
    return {
        "steps": steps,
        "events": events,
        "identical": first_mismatch is None,
        "first_mismatch": first_mismatch,
        "final_checksum": last,
        "runners": {
            name: {
                "step": _stats(step_ns[name]),
                "step_render": _stats(tick_ns[name]),
                "step_by_event": {
                    k: _stats(
                        [t for t, kind in zip(step_ns[name], kinds, strict=True) if kind == k]
                    )
                    for k in events
                },
            }
            for name in order
        },
    }


class _Recorder(Mapping[str, SegmentFn]):
    """A runner that remembers the batches it is sent (a few per batch size)."""

    def __init__(self, inner: Mapping[str, SegmentFn]) -> None:
        self.inner = inner
        self.calls: dict[str, dict[int, list[np.ndarray]]] = {name: {} for name in inner}
        self.queries: dict[str, dict[int, int]] = {name: {} for name in inner}

    def __getitem__(self, name: str) -> SegmentFn:
        fn = self.inner[name]

        def call(codes: np.ndarray) -> np.ndarray:
            codes = np.array(codes, dtype=np.uint64)
            kept = self.calls[name].setdefault(codes.size, [])
            if len(kept) < RECORDED_BATCHES:
                kept.append(codes)
            self.queries[name][codes.size] = self.queries[name].get(codes.size, 0) + codes.size
            return fn(codes)

        return call

    def __iter__(self) -> Iterator[str]:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def record_batches(
    app_cls: type[App], steps: int, seed: int
) -> tuple[dict[str, dict[int, list[np.ndarray]]], dict[str, dict[int, int]]]:
    """Batches each segment receives over the script (an untimed reference pass)."""
    recorder = _Recorder(reference_runner(app_cls.segments))
    app = app_cls(recorder)
    state = app.reset(seed)
    script = script_events(app_cls.name, seed)
    for _ in range(steps):
        state = app.step(state, _adapt(state, next(script)))
        app.render(state)
    return recorder.calls, recorder.queries


def segment_speed(
    fns: Mapping[str, SegmentFn], batches: list[np.ndarray], min_seconds: float = QPS_MIN_SECONDS
) -> dict[str, Any]:
    """Queries/s of each runner's segment replaying ``batches``; outputs must agree."""
    outputs = {
        name: [np.asarray(fn(b), dtype=np.uint64) for b in batches] for name, fn in fns.items()
    }
    ref = next(iter(outputs.values()))
    identical = all(
        all(np.array_equal(a, b) for a, b in zip(out, ref, strict=True)) for out in outputs.values()
    )
    per_pass = sum(b.size for b in batches)
    passes = dict.fromkeys(fns, 0)
    seconds = dict.fromkeys(fns, 0.0)
    # Runners take turns in short slices, so a busy neighbour slows them all alike.
    for _ in range(QPS_ROUNDS):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            elapsed = 0.0
            while elapsed < min_seconds / QPS_ROUNDS:
                for b in batches:
                    fn(b)
                passes[name] += 1
                elapsed = time.perf_counter() - t0
            seconds[name] += elapsed
    qps = {name: passes[name] * per_pass / seconds[name] for name in fns}
    return {"identical": identical, "queries_per_s": qps}


def _emulated(app_cls: type[App], data: Path) -> EmulatedRunner:
    t0 = time.perf_counter()
    runner = load_or_compile_segments(app_cls, data, progress=True)
    print(
        f"{app_cls.name}: emulators ready in {time.perf_counter() - t0:.1f} s ({data})",
        file=sys.stderr,
    )
    return runner


def bench_app(name: str, steps: int, seed: int, data: Path) -> dict[str, Any]:
    """Everything measured for one app."""
    app_cls = get_app(name)
    emulated = _emulated(app_cls, data)
    runners: dict[str, Mapping[str, SegmentFn]] = {
        "emulated": emulated,
        "reference": reference_runner(app_cls.segments),
        "dense": dense_runner(app_cls.segments),
    }
    # Emulators build lookup structures on their first query (tens of ms): pay that
    # before the clock starts, and report it.
    first_query_ms: dict[str, dict[str, float]] = {}
    for r, runner in runners.items():
        for s in app_cls.segments:
            t0 = time.perf_counter()
            runner[s.name](np.zeros(1, dtype=np.uint64))
            first_query_ms.setdefault(s.name, {})[r] = (time.perf_counter() - t0) * 1e3
    ticks = run_ticks(app_cls, runners, steps, seed)
    ticks["emulator_stats"] = emulated.stats()
    calls, queries = record_batches(app_cls, steps, seed)
    segments: dict[str, Any] = {}
    for s in app_cls.segments:
        emu_bytes = int(emulated.emulators[s.name].nbytes)
        packed = packed_bytes(s.in_bits, s.out_bits)
        sizes = sorted(queries[s.name], key=lambda n: -queries[s.name][n])[:QPS_BATCH_SIZES]
        fns = {r: runners[r][s.name] for r in RUNNERS}
        speed = {
            str(n): {"queries": queries[s.name][n], **segment_speed(fns, calls[s.name][n])}
            for n in sorted(sizes)
        }
        segments[s.name] = {
            "in_bits": s.in_bits,
            "out_bits": s.out_bits,
            "emulator_bytes": emu_bytes,
            "packed_bytes": packed,
            "bytes_ratio": emu_bytes / packed,
            "dense_table_bytes": (1 << s.in_bits) * 8,
            "first_query_ms": first_query_ms[s.name],
            "by_batch_size": speed,
        }
    return {"ticks": ticks, "segments": segments}


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "n/a"


def tables(results: Mapping[str, Any]) -> str:
    """The markdown tables printed at the end of a run."""
    cols = (
        ("step", "mean_ms"),
        ("step", "p50_ms"),
        ("step_render", "mean_ms"),
        ("step_render", "p50_ms"),
    )
    lines = [
        "### Tick time (ms; one tick = step + render)",
        "",
        "| app | steps | runner | step mean | step p50 | tick mean | tick p50 | ticks/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for app, res in results.items():
        t = res["ticks"]
        rs = t["runners"]
        for r in RUNNERS:
            cells = [f"{rs[r][k][m]:.3f}" for k, m in cols]
            tps = 1e3 / rs[r]["step_render"]["mean_ms"]
            lines.append(
                f"| {app} | {t['steps']} | {r} | " + " | ".join(cells) + f" | {tps:,.0f} |"
            )
        for base in ("reference", "dense"):
            cells = [_ratio(rs["emulated"][k][m], rs[base][k][m]) for k, m in cols]
            lines.append(f"| {app} | | **emulated / {base}** | " + " | ".join(cells) + " | |")
    lines += [
        "",
        "### Segments (bytes; queries/s of the segment alone at the app's batch sizes)",
        "",
        "| app | segment | n→m | emulator B | packed B | emu / packed | emu 1st query ms"
        " | batch | emulated q/s | reference q/s | dense q/s | emu / ref | emu / dense |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for app, res in results.items():
        for seg, s in res["segments"].items():
            head = (
                f"| {app} | {seg} | {s['in_bits']}→{s['out_bits']} | {s['emulator_bytes']:,} "
                f"| {s['packed_bytes']:,} | {s['bytes_ratio']:.3f} "
                f"| {s['first_query_ms']['emulated']:.1f} "
            )
            for n, b in s["by_batch_size"].items():
                q = b["queries_per_s"]
                lines.append(
                    head
                    + f"| {int(n):,} | {q['emulated']:,.0f} | {q['reference']:,.0f} "
                    + f"| {q['dense']:,.0f} | {_ratio(q['reference'], q['emulated'])} "
                    + f"| {_ratio(q['dense'], q['emulated'])} |"
                )
                head = "| | | | | | | "
    lines += [
        "",
        "Tick ratios: emulated time / baseline time (above 1: slower). Segment ratios "
        "emu / ref and emu / dense: the baseline's rate / the emulator's rate (same reading).",
    ]
    return "\n".join(lines)


def _mismatches(results: Mapping[str, Any]) -> list[str]:
    found = []
    for app, res in results.items():
        t = res["ticks"]
        if not t["identical"]:
            m = t["first_mismatch"]
            found.append(f"{app}: framebuffers differ from step {m['step']}: {m['checksums']}")
        for seg, s in res["segments"].items():
            for n, b in s["by_batch_size"].items():
                if not b["identical"]:
                    found.append(f"{app}:{seg}: runners answer differently (batch size {n})")
        fallbacks = {k: v["fallbacks"] for k, v in t["emulator_stats"].items() if v["fallbacks"]}
        if fallbacks:
            found.append(f"{app}: emulated segments fell back to reference code: {fallbacks}")
    return found


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "codec_version": CODEC_VERSION,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, help=f"script steps per app (default: {DEFAULT_STEPS})"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT / "bench" / "out" / "data",
        help="emulator cache (compiled there once)",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "apps.json")
    parser.add_argument("--apps", nargs="+", choices=APP_NAMES, default=list(APP_NAMES))
    parser.add_argument("--seed", type=int, default=2048)
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    t0 = time.perf_counter()
    results = {}
    for app in args.apps:
        steps = args.steps or DEFAULT_STEPS[app]
        results[app] = bench_app(app, steps, args.seed, args.data)
    print(tables(results))
    problems = _mismatches(results)
    for p in problems:
        print(f"MISMATCH {p}", file=sys.stderr)
    if problems:
        print(f"\n!!! {len(problems)} MISMATCH(ES): emulation is not exact !!!", file=sys.stderr)
    else:
        print("\nFramebuffers identical across the three runners at every step; 0 fallbacks.")
    doc = {
        "machine": _machine(),
        "seed": args.seed,
        "seconds": time.perf_counter() - t0,
        "identical": not problems,
        "mismatches": problems,
        "apps": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"JSON: {args.json}  ({doc['seconds']:.0f} s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
