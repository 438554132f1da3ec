"""web/msgpack.js against msgpack-python: same bytes out, same errors on bad input."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.browser

SAFE = 2**53 - 1

ROUNDTRIP = """
  return arg.map((h) => toHex(m.encode(m.decode(fromHex(h)))));
"""

ERROR = """
  try { m.decode(fromHex(arg)); return "no error"; }
  catch (e) { return e.name + ": " + e.message; }
"""

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-SAFE, max_value=SAFE)
    | st.text(max_size=300)
    | st.binary(max_size=300)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=20)
        | st.dictionaries(st.text(max_size=8) | st.integers(-1000, 1000), inner, max_size=20)
    ),
    max_leaves=40,
)


def roundtrip(js: Any, items: list[Any]) -> list[str]:
    return js("msgpack.js", ROUNDTRIP, [msgpack.packb(v).hex() for v in items])


def test_encode_matches_msgpack_python_bytes(js: Any) -> None:
    items = [
        None,
        True,
        False,
        0,
        127,
        128,
        255,
        256,
        65535,
        65536,
        2**32 - 1,
        2**32,
        SAFE,
        -1,
        -32,
        -33,
        -128,
        -129,
        -32768,
        -32769,
        -(2**31),
        -(2**31) - 1,
        -SAFE,
        "",
        "x" * 31,
        "x" * 32,
        "é" * 200,
        "y" * 70000,
        b"",
        b"\x00" * 256,
        b"\xff" * 70000,
        list(range(15)),
        list(range(16)),
        list(range(70000)),
        {"a": 1, 2: [b"b", None]},
        {str(i): i for i in range(16)},
    ]
    assert roundtrip(js, items) == [msgpack.packb(v).hex() for v in items]


def test_decode_gives_js_values(js: Any) -> None:
    packed = msgpack.packb([1, "h\u00e9", b"\x00\x01", [True, None], {"k": -5}, 2**40]).hex()
    got = js(
        "msgpack.js",
        """
        const [a, s, b, l, mp, big] = m.decode(fromHex(arg));
        return [a, s, b instanceof Uint8Array, toHex(b), l, mp instanceof Map, mp.get("k"), big];
        """,
        packed,
    )
    assert got == [1, "h\u00e9", True, "0001", [True, None], True, -5, 2**40]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(values, min_size=1, max_size=8))
def test_roundtrip_is_byte_identical(js: Any, items: list[Any]) -> None:
    assert roundtrip(js, items) == [msgpack.packb(v).hex() for v in items]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ("cb3ff0000000000000", "MsgpackError: unsupported msgpack type 0xcb"),
        ("ca3f800000", "MsgpackError: unsupported msgpack type 0xca"),
        ("d40100", "MsgpackError: unsupported msgpack type 0xd4"),
        ("c1", "MsgpackError: unsupported msgpack type 0xc1"),
        ("cf0020000000000000", "MsgpackError: integer beyond 2^53"),
        ("d3ffdfffffffffffff", "MsgpackError: integer beyond 2^53"),
        ("", "MsgpackError: truncated msgpack data"),
        ("92 01".replace(" ", ""), "MsgpackError: truncated msgpack data"),
        ("cd01", "MsgpackError: truncated msgpack data"),
        ("a3616263ff", "MsgpackError: trailing bytes after msgpack value"),
        ("a2c328", "MsgpackError: invalid UTF-8 in str"),
        ("ddffffffff", "MsgpackError: truncated msgpack data"),
        ("dfffffffff", "MsgpackError: truncated msgpack data"),
        ("c6ffffffff", "MsgpackError: truncated msgpack data"),
        ("81910101", "MsgpackError: map key must be a scalar"),
        ("91" * 40 + "c0", "MsgpackError: nesting too deep"),
    ],
)
def test_decode_rejects(js: Any, data: str, error: str) -> None:
    assert js("msgpack.js", ERROR, data) == error


def test_decode_size_limit(js: Any) -> None:
    body = """
      const big = new Uint8Array((1 << 20) + 1);
      try { m.decode(big); return "no error"; } catch (e) { return e.name + ": " + e.message; }
    """
    assert js("msgpack.js", body) == "PayloadTooBig: msgpack data of 1048577 bytes exceeds 1048576"


@pytest.mark.parametrize(
    ("expr", "error"),
    [
        ("1.5", "MsgpackError: not a safe integer: 1.5"),
        ("2 ** 53", "MsgpackError: not a safe integer: 9007199254740992"),
        ("10n", "MsgpackError: cannot encode [object BigInt]"),
        ("new Date(0)", "MsgpackError: cannot encode [object Date]"),
        ("new Uint16Array(2)", "MsgpackError: cannot encode [object Uint16Array]"),
    ],
)
def test_encode_rejects(js: Any, expr: str, error: str) -> None:
    body = f"""
      try {{ m.encode({expr}); return "no error"; }}
      catch (e) {{ return e.name + ": " + e.message; }}
    """
    assert js("msgpack.js", body) == error
