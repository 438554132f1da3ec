"""web/carriers.js: the server's ICE server list, checked before RTCPeerConnection sees it."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHECK = "try { return m.checkIceServers(arg); } catch (e) { return 'Error: ' + e.message; }"


def test_good_lists_are_normalised(js: Any) -> None:
    servers = [
        {"urls": "stun:127.0.0.1:3478"},
        {
            "urls": ["turn:turn.example.org:3478?transport=udp", "turns:t:5349?transport=tcp"],
            "username": "1700000000:alice",
            "credential": "c2VjcmV0",
        },
    ]
    assert js("carriers.js", CHECK, servers) == [
        {"urls": ["stun:127.0.0.1:3478"]},
        {
            "urls": ["turn:turn.example.org:3478?transport=udp", "turns:t:5349?transport=tcp"],
            "username": "1700000000:alice",
            "credential": "c2VjcmV0",
        },
    ]
    assert js("carriers.js", CHECK, []) == []
    assert len(js("carriers.js", CHECK, [{"urls": "stun:h"}] * 16)) == 16


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (None, "iceServers must be a list"),
        ({"urls": "stun:h"}, "iceServers must be a list"),
        ([{"urls": "stun:h"}] * 17, "more than 16 ICE servers"),
        (["stun:h"], "each ICE server must be an object"),
        ([None], "each ICE server must be an object"),
        ([{"urls": "stun:h", "x": 1}], 'unexpected ICE server key "x"'),
        ([{"urls": []}], "1..16 strings"),
        ([{"urls": ["stun:h"] * 17}], "1..16 strings"),
        ([{"urls": 3}], "1..16 strings"),
        ([{"urls": "http://h"}], 'not a stun:, stuns:, turn: or turns: URL: "http://h"'),
        ([{"urls": "stun:h h"}], "not a stun:"),
        ([{"urls": "stun:h:0"}], "not a stun:"),
        ([{"urls": "stun:h?transport=udp"}], "not a stun:"),
        ([{"urls": "turns:h:5349?transport=udp"}], "not a stun:"),
        ([{"urls": "stun:h", "username": None, "credential": None}], "username must be a string"),
        ([{"urls": "stun:" + "h" * 252}], "at most 256 characters"),
        ([{"urls": "turn:h", "username": "u"}], "or neither"),
        ([{"urls": "turn:h", "username": 1, "credential": "c"}], "username must be a string"),
        ([{"urls": "turn:h", "username": "u", "credential": "c" * 513}], "at most 512"),
    ],
)
def test_bad_lists_are_refused(js: Any, value: Any, error: str) -> None:
    result = js("carriers.js", CHECK, value)
    assert isinstance(result, str) and result.startswith("Error: ") and error in result, result
