"""web/backoff.js: the reconnect schedule, 1 s doubling to a 15 s cap, and its text."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.browser

# Each example is a round trip into Chromium: no per-example deadline, fewer examples.
in_browser = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_delays_double_then_cap(js: Any) -> None:
    delays = js("backoff.js", "return arg.map((n) => m.reconnectDelayMs(n));", list(range(1, 9)))
    assert delays == [1000, 2000, 4000, 8000, 15000, 15000, 15000, 15000]


@in_browser
@given(st.integers(min_value=1, max_value=2**40))
def test_delay_never_past_the_cap(js: Any, attempt: int) -> None:
    delay = js("backoff.js", "return m.reconnectDelayMs(arg);", attempt)
    assert delay == min(1000 * 2 ** min(attempt - 1, 4), 15000)


@pytest.mark.parametrize("attempt", [0, -1, 1.5, None])
def test_bad_attempt_is_refused(js: Any, attempt: Any) -> None:
    body = "try { m.reconnectDelayMs(arg); return 'no error'; } catch (e) { return e.name; }"
    assert js("backoff.js", body, attempt) == "RangeError"


@pytest.mark.parametrize(
    ("remaining_ms", "text"),
    [
        (3000, "reconnecting in 3 s…"),
        (2001, "reconnecting in 3 s…"),
        (1000, "reconnecting in 1 s…"),
        (10, "reconnecting in 1 s…"),
        (-5, "reconnecting in 1 s…"),
        (15000, "reconnecting in 15 s…"),
    ],
)
def test_countdown_text(js: Any, remaining_ms: int, text: str) -> None:
    assert js("backoff.js", "return m.reconnectText(arg);", remaining_ms) == text
