"""web/segments.js: the overlay's emulated-segment summary from GET /api/status."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.browser

# Each example is a round trip into Chromium: no per-example deadline, fewer examples.
in_browser = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SUMMARY = "return m.segmentSummary(arg[0], arg[1]);"
TEXT = "return m.segmentText(m.segmentSummary(arg[0], arg[1]));"


def seg(nbytes: int | None, **extra: Any) -> dict[str, Any]:
    return {"in_bits": 16, "out_bits": 16, "bytes": nbytes, "packed_bytes": 131072, **extra}


# The server's shape: apps keyed by name, segments keyed by name.
SERVER_STATUS = {
    "apps": {
        "2048": {
            "mode": "emulated",
            "state": "ready",
            "segments": {
                "glyph": seg(5200, verified="exhaustive", queries=7, fallbacks=0),
                "row_move_left": seg(7100, verified="exhaustive", queries=3, fallbacks=1),
                "row_score": seg(None, verified="none"),
            },
        },
        "sand": {"mode": "emulated", "state": "not loaded"},
    },
    "default_app": "2048",
}


def test_server_shape(js: Any) -> None:
    assert js("segments.js", SUMMARY, [SERVER_STATUS, "2048"]) == {
        "mode": "emulated",
        "count": 2,
        "total": 3,
        "bytes": 12300,
        "packedBytes": 262144,
        "verified": 2,
        "queries": 10,
        "fallbacks": 1,
    }
    assert js("segments.js", TEXT, [SERVER_STATUS, "2048"]) == "2 · 12.3 kB"


@pytest.mark.parametrize(
    ("status", "app", "text"),
    [
        (SERVER_STATUS, "sand", "-"),  # not loaded yet: no segments listed
        (SERVER_STATUS, "viewer", "-"),
        ({"apps": ["2048", "sand"]}, "2048", "-"),  # an older server: names only
        ({}, "2048", "-"),
        (None, "2048", "-"),
        ("not json", "2048", "-"),
        (
            {"apps": {"2048": {"mode": "reference", "segments": {"a": seg(None)}}}},
            "2048",
            "none of 1 (reference)",
        ),
        ({"apps": [{"name": "sand", "segments": [seg(250_000)]}]}, "sand", "1 · 250 kB"),
        ({"segments": {"sand": [seg(999)]}}, "sand", "1 · 1.0 kB"),
        (
            {"segments": [{"app": "sand", "bytes": 10}, {"app": "2048", "bytes": 5}]},
            "sand",
            "1 · 0.0 kB",
        ),
        (
            {"apps": {"2048": {"segments": {"a": seg(-1), "b": seg(1.5), "c": "x"}}}},
            "2048",
            "none of 2",
        ),
    ],
)
def test_shapes_and_absence(js: Any, status: Any, app: str, text: str) -> None:
    assert js("segments.js", TEXT, [status, app]) == text


@in_browser
@given(st.lists(st.one_of(st.none(), st.integers(0, 2**40)), max_size=8))
def test_sums_only_sized_segments(js: Any, sizes: list[int | None]) -> None:
    status = {"apps": {"a": {"segments": {f"s{i}": seg(n) for i, n in enumerate(sizes)}}}}
    got = js("segments.js", SUMMARY, [status, "a"])
    sized = [n for n in sizes if n is not None]
    assert (got["count"], got["total"], got["bytes"]) == (len(sized), len(sizes), sum(sized))
