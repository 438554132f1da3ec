"""parse_json_object: one bounded JSON object, or one named error."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulacra.errors import PayloadTooBig, ProtocolError
from simulacra.protocol.jsontext import parse_json_object


def test_an_object_comes_back_as_a_dict() -> None:
    assert parse_json_object('{"id":1,"op":"ls"}', limit=64) == {"id": 1, "op": "ls"}


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("x" * 65, PayloadTooBig, "request over 64 bytes"),
        ("not json", ProtocolError, "request is not JSON"),
        ("[1, 2]", ProtocolError, "request must be a JSON object"),
        ('"text"', ProtocolError, "request must be a JSON object"),
    ],
)
def test_refusals_name_what_was_wrong(text: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as raised:
        parse_json_object(text, limit=64, what="request")
    assert type(raised.value) is error and str(raised.value) == message


@given(st.text(max_size=80))
def test_any_text_is_an_object_or_a_protocol_error(text: str) -> None:
    try:
        obj = parse_json_object(text, limit=64)
    except ProtocolError:
        return
    assert isinstance(obj, dict) and isinstance(json.loads(text), dict) and len(text) <= 64
