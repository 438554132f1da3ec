"""Latency bookkeeping: nearest-rank percentiles, exact summaries."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulacra.client.stats import LatencyStats, percentile


def test_percentile_nearest_rank() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert percentile(values, 50) == 5.0
    assert percentile(values, 99) == 10.0
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 10.0
    assert percentile([], 50) == 0.0


def test_percentile_range_checked() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_exact() -> None:
    stats = LatencyStats([4.0, 1.0, 3.0, 2.0])
    assert stats.summary() == {"p50": 2.0, "p99": 4.0, "mean": 2.5, "max": 4.0, "count": 4}
    assert len(stats) == 4


def test_summary_empty() -> None:
    assert LatencyStats().summary() == {"p50": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0, "count": 0}


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_rejects_bad_samples(bad: float) -> None:
    with pytest.raises(ValueError):
        LatencyStats().add(bad)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200))
def test_summary_is_ordered(values: list[float]) -> None:
    summary = LatencyStats(values).summary()
    assert summary["count"] == len(values)
    assert summary["p50"] <= summary["p99"] <= summary["max"]
    assert summary["max"] == round(max(values), 3)
    assert percentile(sorted(values), 50) in values
