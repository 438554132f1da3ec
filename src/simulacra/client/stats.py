"""Latency and throughput figures a headless client reports.

::

    input sent ─► t0 ─────── frame with input_seq >= seq arrives ─► t1
                             LatencyStats.add((t1 - t0) * 1000)
    summary() ─► {"p50", "p99", "mean", "max", "count"}   (milliseconds)

Pure bookkeeping: no clock, no I/O; callers pass the measured values in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["percentile", "LatencyStats", "MAX_SAMPLES"]

# One float per move; a day of moves at 100 Hz stays well below this.
MAX_SAMPLES = 1_000_000


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..100) of an ascending sequence; 0.0 when empty."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return float(sorted_values[rank - 1])


class LatencyStats:
    """Collects latency samples (ms) and summarises them."""

    __slots__ = ("_samples",)

    def __init__(self, samples: Iterable[float] = ()) -> None:
        self._samples: list[float] = []
        for value in samples:
            self.add(value)

    def add(self, ms: float) -> None:
        if ms < 0 or math.isnan(ms):
            raise ValueError(f"latency must be a non-negative number, got {ms}")
        # Bounded like every buffer: past the cap the oldest half is dropped,
        # so a very long run still reports recent behaviour.
        if len(self._samples) >= MAX_SAMPLES:
            del self._samples[: MAX_SAMPLES // 2]
        self._samples.append(ms)

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def samples(self) -> tuple[float, ...]:
        return tuple(self._samples)

    def summary(self) -> dict[str, float | int]:
        """``{"p50", "p99", "mean", "max", "count"}`` rounded to microseconds."""
        ordered = sorted(self._samples)
        count = len(ordered)
        mean = sum(ordered) / count if count else 0.0
        return {
            "p50": round(percentile(ordered, 50), 3),
            "p99": round(percentile(ordered, 99), 3),
            "mean": round(mean, 3),
            "max": round(ordered[-1] if ordered else 0.0, 3),
            "count": count,
        }
