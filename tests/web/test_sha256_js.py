"""web/sha256.js: SHA-256 equal to hashlib's for any bytes, fed in any split."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.browser

# Each example is a round trip into Chromium: no per-example deadline, fewer examples.
in_browser = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SPLIT = """
  const [hex, cuts] = arg;
  const bytes = fromHex(hex);
  const h = new m.Sha256();
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    const end = Math.min(Math.max(cut, at), bytes.length);
    h.update(bytes.subarray(at, end));
    at = end;
  }
  return h.hexdigest();
"""


@pytest.mark.parametrize(
    "data",
    [b"", b"abc", b"a" * 55, b"a" * 56, b"a" * 63, b"a" * 64, b"a" * 65, b"x" * 1000],
)
def test_known_lengths(js: Any, data: bytes) -> None:
    assert js("sha256.js", "return m.sha256Hex(fromHex(arg));", data.hex()) == (
        hashlib.sha256(data).hexdigest()
    )


@in_browser
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_any_split(js: Any, data: bytes, cuts: list[int]) -> None:
    assert js("sha256.js", SPLIT, [data.hex(), sorted(cuts)]) == hashlib.sha256(data).hexdigest()


def test_one_byte_at_a_time(js: Any) -> None:
    data = bytes(range(256)) * 3
    cuts = list(range(1, len(data)))
    assert js("sha256.js", SPLIT, [data.hex(), cuts]) == hashlib.sha256(data).hexdigest()


def test_hexdigest_is_final(js: Any) -> None:
    body = """
      const h = new m.Sha256().update(fromHex("616263"));
      const first = h.hexdigest();
      const again = h.hexdigest();
      try { h.update(fromHex("00")); return "no error"; } catch (e) { return [first === again, e.message]; }
    """
    assert js("sha256.js", body) == [True, "sha256: update after hexdigest"]
