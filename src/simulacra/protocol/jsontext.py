"""JSON text frames of the side channels (files API, signaling): one object each, bounded.

::

    text ─► size check (PayloadTooBig) ─► json.loads (ProtocolError) ─► dict? ─► object

Protocol v1 itself is msgpack (``wire.py``); the WebSocket side channels carry
small JSON objects, and every endpoint parses them the same way.
"""

from __future__ import annotations

import json
from typing import Any

from simulacra.errors import PayloadTooBig, ProtocolError

__all__ = ["parse_json_object"]


def parse_json_object(text: str, *, limit: int, what: str = "message") -> dict[str, Any]:
    """The JSON object in ``text``; ``PayloadTooBig`` past ``limit`` characters."""
    if len(text) > limit:
        raise PayloadTooBig(f"{what} over {limit} bytes")
    try:
        obj = json.loads(text)
    except ValueError:
        raise ProtocolError(f"{what} is not JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return obj
