"""web/protocol.js speaks docs/protocol.md: exact bytes both ways, errors with their codes."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

pytestmark = pytest.mark.browser

ENCODE = "return toHex(m.encodeMessage(arg));"

DECODE = """
  const msg = m.decodeMessage(fromHex(arg));
  if (msg.tiles) msg.tiles = msg.tiles.map(([i, e, d]) => [i, e, toHex(d)]);
  if (msg.data) msg.data = toHex(msg.data);
  return msg;
"""

DECODE_ERROR = """
  try { m.decodeMessage(fromHex(arg)); return "no error"; }
  catch (e) { return [e.name, e.code, e.message]; }
"""


def packed(*items: Any) -> str:
    return msgpack.packb([1, *items], use_bin_type=True).hex()


@pytest.mark.parametrize(
    ("msg", "wire"),
    [
        (
            {"type": 1, "client": "simulacra-web/0.1", "app": "", "session": "", "mode": "tiles"},
            packed(1, "simulacra-web/0.1", "", "", "tiles"),
        ),
        (
            {"type": 3, "seq": 7, "kind": "key", "key": "ArrowLeft", "x": 0, "y": 0, "buttons": 0},
            packed(3, 7, "key", "ArrowLeft", 0, 0, 0),
        ),
        (
            {"type": 3, "seq": 300, "kind": "pointer", "key": "", "x": 511, "y": -1, "buttons": 1},
            packed(3, 300, "pointer", "", 511, -1, 1),
        ),
        ({"type": 5, "seq": 2**40}, packed(5, 2**40)),
        ({"type": 6, "code": 400, "message": "bad"}, packed(6, 400, "bad")),
        ({"type": 7, "reason": "page closed"}, packed(7, "page closed")),
        ({"type": 8, "reason": "checksum mismatch"}, packed(8, "checksum mismatch")),
    ],
)
def test_encode_message_bytes(js: Any, msg: dict[str, Any], wire: str) -> None:
    assert js("protocol.js", ENCODE, msg) == wire


def test_encode_message_matches_python_wire(js: Any) -> None:
    wire = pytest.importorskip("simulacra.protocol.wire")
    from simulacra.protocol import messages as m

    pairs = [
        (m.Hello(client="simulacra-web/0.1", app="2048", session="s", mode="tiles"),
         {"type": 1, "client": "simulacra-web/0.1", "app": "2048", "session": "s", "mode": "tiles"}),
        (m.Input(seq=1, kind="key", key="ArrowUp", x=0, y=0, buttons=0),
         {"type": 3, "seq": 1, "kind": "key", "key": "ArrowUp", "x": 0, "y": 0, "buttons": 0}),
        (m.Ack(seq=9), {"type": 5, "seq": 9}),
        (m.Resync(reason="checksum mismatch"), {"type": 8, "reason": "checksum mismatch"}),
        (m.Bye(reason="page closed"), {"type": 7, "reason": "page closed"}),
    ]  # fmt: skip
    for py_msg, js_msg in pairs:
        assert js("protocol.js", ENCODE, js_msg) == wire.encode_message(py_msg).hex()


def test_decode_welcome_and_frame(js: Any) -> None:
    welcome = packed(
        2, "alice/2048", "alice", "control", "2048", 512, 576, 16, 4096, ["2048", "sand"]
    )
    assert js("protocol.js", DECODE, welcome) == {
        "type": 2,
        "session": "alice/2048",
        "user": "alice",
        "role": "control",
        "app": "2048",
        "width": 512,
        "height": 576,
        "tileSize": 16,
        "dictionarySlots": 4096,
        "apps": ["2048", "sand"],
    }
    frame = packed(
        4, 3, 2, False, 32, 16, [[0, 0, b"\x01\x02\x03"], [1, 4, b"\x00\x05"]], 2**32 - 1
    )
    assert js("protocol.js", DECODE, frame) == {
        "type": 4,
        "seq": 3,
        "inputSeq": 2,
        "keyframe": False,
        "width": 32,
        "height": 16,
        "tiles": [[0, 0, "010203"], [1, 4, "0005"]],
        "checksum": 2**32 - 1,
    }


def test_decode_packed_frame_from_python(js: Any) -> None:
    from simulacra.protocol.messages import Hello, PackedFrame
    from simulacra.protocol.wire import encode_message

    wire = encode_message(PackedFrame(3, 2, False, 32, 16, 1, 4, b"\x01\x02", 0xDEADBEEF))
    assert js("protocol.js", DECODE, wire.hex()) == {
        "type": 9,
        "seq": 3,
        "inputSeq": 2,
        "keyframe": False,
        "width": 32,
        "height": 16,
        "count": 1,
        "size": 4,
        "data": "0102",
        "checksum": 0xDEADBEEF,
    }
    hello = {"type": 1, "client": "simulacra-web/0.2", "app": "", "session": "", "mode": "packed"}
    assert (
        js("protocol.js", ENCODE, hello)
        == encode_message(Hello("simulacra-web/0.2", "", "", "packed")).hex()
    )
    body = """
      const c = new m.ClientConnection();
      c.send({type: 1, client: "w", app: "", session: "", mode: "packed"});
      c.receiveData(fromHex(arg.welcome));
      const msg = c.receiveData(fromHex(arg.frame));
      return [msg.type, c.state];
    """
    welcome = packed(2, "s", "u", "view", "2048", 32, 16, 16, 0, [])
    assert js("protocol.js", body, {"welcome": welcome, "frame": wire.hex()}) == [9, "STREAMING"]


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (msgpack.packb([2, 7, "x"]).hex(), ["ProtocolError", 426, "unsupported version 2"]),
        (packed(99, "x"), ["ProtocolError", 400, "unknown message type 99"]),
        (packed(7), ["ProtocolError", 400, "Bye needs 1 fields"]),
        (packed(7, "a", "b"), ["ProtocolError", 400, "Bye needs 1 fields"]),
        (packed(5, -1), ["ProtocolError", 400, "Ack.seq is invalid"]),
        (packed(5, True), ["ProtocolError", 400, "Ack.seq is invalid"]),
        (packed(4, 1, 0, 1, 16, 16, [], 0), ["ProtocolError", 400, "Frame.keyframe is invalid"]),
        (packed(9, 1, 0, True, 16, 16, 1, 3, "abc", 0), ["ProtocolError", 400, "PackedFrame.data is invalid"]),
        (packed(9, 1, 0, True, 16, 16, 1, 3, b"abc"), ["ProtocolError", 400, "PackedFrame needs 9 fields"]),
        (packed(4, 1, 0, True, 16, 16, [[0, 0, "abc"]], 0), ["ProtocolError", 400, "Frame.tiles is invalid"]),
        (packed(2, "s", "u", "r", "a", 16, 16, 16, 0, [1]), ["ProtocolError", 400, "Welcome.apps is invalid"]),
        (msgpack.packb({"v": 1}).hex(), ["ProtocolError", 400, "a message is an array [version, type, ...]"]),
        ("cb3ff0000000000000", ["ProtocolError", 400, "unsupported msgpack type 0xcb"]),
        ("93010701", ["ProtocolError", 400, "Bye.reason is invalid"]),
    ],
)  # fmt: skip
def test_decode_rejects(js: Any, wire: str, error: list[Any]) -> None:
    assert js("protocol.js", DECODE_ERROR, wire) == error


def test_decode_size_limit(js: Any) -> None:
    body = """
      const big = new Uint8Array((1 << 20) + 1);
      try { m.decodeMessage(big); return "no error"; } catch (e) { return [e.code, e.message]; }
    """
    assert js("protocol.js", body) == [413, "message of 1048577 bytes exceeds 1048576"]


def test_encode_rejects_bad_fields(js: Any) -> None:
    body = """
      try { m.encodeMessage({type: 5, seq: "1"}); return "no error"; }
      catch (e) { return e.message; }
    """
    assert js("protocol.js", body) == "Ack.seq is invalid"


def test_client_state_machine(js: Any) -> None:
    welcome = packed(2, "s", "u", "control", "2048", 16, 16, 16, 0, [])
    frame = packed(4, 1, 0, True, 16, 16, [[0, 0, b"\x00\x00\x00"]], 0)
    body = """
      const c = new m.ClientConnection();
      const seen = [c.state];
      const attempt = (f) => { try { f(); } catch (e) { seen.push([e.code, e.message]); } };
      attempt(() => c.send({type: 5, seq: 1}));
      attempt(() => c.receiveData(fromHex(arg.frame)));
      c.send({type: 1, client: "t", app: "", session: "", mode: "tiles"});
      seen.push(c.state);
      attempt(() => c.send({type: 3, seq: 1, kind: "key", key: "a", x: 0, y: 0, buttons: 0}));
      c.receiveData(fromHex(arg.welcome));
      seen.push(c.state);
      seen.push(c.receiveData(fromHex(arg.frame)).seq);
      seen.push(toHex(c.send({type: 5, seq: 1})));
      attempt(() => c.receiveData(fromHex(arg.welcome)));
      seen.push(c.state);
      return seen;
    """
    assert js("protocol.js", body, {"welcome": welcome, "frame": frame}) == [
        "IDLE",
        [409, "cannot send Ack in IDLE"],
        [409, "unexpected Frame in IDLE"],
        "HELLO_SENT",
        [409, "cannot send Input in HELLO_SENT"],
        "STREAMING",
        1,
        packed(5, 1),
        [409, "unexpected Welcome in STREAMING"],
        "STREAMING",
    ]


def test_fail_gives_error_bytes_and_closes(js: Any) -> None:
    body = """
      const c = new m.ClientConnection();
      c.send({type: 1, client: "t", app: "", session: "", mode: "tiles"});
      const bytes = c.fail(new m.ProtocolError("bad frame"));
      return [toHex(bytes), c.state];
    """
    assert js("protocol.js", body) == [packed(6, 400, "bad frame"), "CLOSED"]


def test_forbidden_error_while_streaming_keeps_the_stream(js: Any) -> None:
    welcome = packed(2, "s", "viewer", "view", "2048", 512, 576, 16, 0, ["2048"])
    body = """
      const c = new m.ClientConnection();
      c.send({type: 1, client: "t", app: "", session: "", mode: "tiles"});
      c.receiveData(fromHex(arg[0]));
      const refused = c.receiveData(fromHex(arg[1]));
      const after403 = c.state;
      c.receiveData(fromHex(arg[2]));
      return [refused.code, after403, c.state];
    """
    forbidden = packed(6, 403, "view role: input refused")
    gone = packed(6, 500, "server error")
    assert js("protocol.js", body, [welcome, forbidden, gone]) == [403, "STREAMING", "CLOSED"]


def test_forbidden_error_before_streaming_closes(js: Any) -> None:
    body = """
      const c = new m.ClientConnection();
      c.send({type: 1, client: "t", app: "", session: "", mode: "tiles"});
      c.receiveData(fromHex(arg));
      return c.state;
    """
    assert js("protocol.js", body, packed(6, 403, "no")) == "CLOSED"
