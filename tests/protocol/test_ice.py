"""protocol/ice.py: the shape of ICE server lists, checked without any I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulacra.errors import ProtocolError
from simulacra.protocol.ice import (
    MAX_ICE_CREDENTIAL_CHARS,
    IceServer,
    ice_url_problem,
    is_turn_url,
    parse_ice_servers,
)


@pytest.mark.parametrize(
    "url",
    [
        "stun:127.0.0.1:3478",
        "stun:stun.example.org",
        "stuns:stun.example.org:5349",
        "turn:turn.example.org",
        "turn:10.0.0.1:3478?transport=udp",
        "turn:coturn:3478?transport=tcp",
        "turns:turn.example.org:443?transport=tcp",
        "stun:h:65535",
    ],
)
def test_good_urls(url: str) -> None:
    assert ice_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (3478, "must be a string"),
        ("", "empty or contains whitespace"),
        ("stun:h\t:1", "whitespace"),
        ("stun:h:1 ", "whitespace"),
        ("turn://h:1", "is not scheme:host"),
        ("turn:user@h:1", "is not scheme:host"),
        ("stun:h:1:2", "is not scheme:host"),
        ("stun:h:", "is not scheme:host"),
        ("stun:h:123456", "is not scheme:host"),
        ("stun:h:65536", "port outside 1..65535"),
        ("turn:h:1?transport=", "is not scheme:host"),
        ("turn:h:1?foo=bar", "is not scheme:host"),
        ("stuns:h?transport=tcp", "only turn: and turns: take a transport"),
        ("turns:h:5349?transport=udp", "turns: runs over TLS (tcp), not udp"),
        ("ftp:h:1", "must start with stun:, stuns:, turn: or turns:"),
        ("h:1", "must start with stun:"),
        ("stun:" + "a" * 252, "longer than 256"),
    ],
)
def test_bad_urls(url: object, problem: str) -> None:
    found = ice_url_problem(url)
    assert found is not None and problem in found


def test_turn_urls_need_credentials() -> None:
    assert [is_turn_url(u) for u in ("stun:h", "stuns:h", "turn:h", "turns:h")] == [
        False,
        False,
        True,
        True,
    ]


def test_parse_normalises_a_single_url_and_round_trips() -> None:
    servers = parse_ice_servers(
        [
            {"urls": "stun:a:1"},
            {"urls": ["turn:b:2", "turns:c:3"], "username": "99:u", "credential": "c2k="},
        ]
    )
    assert servers == (
        IceServer(("stun:a:1",)),
        IceServer(("turn:b:2", "turns:c:3"), "99:u", "c2k="),
    )
    assert [s.to_json() for s in servers] == [
        {"urls": ["stun:a:1"]},
        {"urls": ["turn:b:2", "turns:c:3"], "username": "99:u", "credential": "c2k="},
    ]
    assert parse_ice_servers([s.to_json() for s in servers]) == servers
    assert parse_ice_servers([]) == ()


def test_parse_limits() -> None:
    assert len(parse_ice_servers([{"urls": "stun:h"}] * 16)) == 16
    with pytest.raises(ProtocolError, match="more than 16 entries"):
        parse_ice_servers([{"urls": "stun:h"}] * 17)
    assert len(parse_ice_servers([{"urls": ["stun:h"] * 16}])[0].urls) == 16
    with pytest.raises(ProtocolError, match="more than 16 URLs"):
        parse_ice_servers([{"urls": ["stun:h"] * 17}])
    longest = "x" * MAX_ICE_CREDENTIAL_CHARS
    assert parse_ice_servers([{"urls": "turn:h", "username": longest, "credential": longest}])
    with pytest.raises(ProtocolError, match="username must be a string of at most 512"):
        parse_ice_servers([{"urls": "turn:h", "username": longest + "x", "credential": ""}])


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (None, "iceServers must be a list"),
        ({"urls": "stun:h"}, "iceServers must be a list"),
        (["stun:h"], "must be an object"),
        ([{}], "string or a list of strings"),
        ([{"urls": None}], "string or a list of strings"),
        ([{"urls": [1]}], "must be a string"),
        ([{"urls": "stun:h", "credentialType": "password"}], "unexpected iceServers key"),
        ([{"urls": "turn:h", "credential": "c"}], "or neither"),
        ([{"urls": "turn:h", "username": "u", "credential": None}], "not null"),
        ([{"urls": "stun:h", "username": None, "credential": None}], "not null"),
    ],
)
def test_parse_refuses_other_shapes(value: object, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        parse_ice_servers(value)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(["urls", "username", "credential", "x"]), c, max_size=3
            )
        ),
        max_leaves=12,
    )
)
def test_parse_any_json_is_servers_or_a_protocol_error(value: object) -> None:
    try:
        servers = parse_ice_servers(value)
    except ProtocolError:
        return
    assert all(isinstance(s, IceServer) for s in servers)
