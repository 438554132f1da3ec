"""Tokens: how they are made, stored and read from a request.

::

    secrets.token_urlsafe(24) ──► token (shown once, 192 bits)
                                    │ sha256
                                    ▼
                              token_sha256 (the only form the store keeps)

A token is looked up by its hash, so comparing a guess never walks the
secret byte by byte; ``hmac.compare_digest`` re-checks the row found.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from simulacra.errors import ConfigError

__all__ = [
    "ROLES",
    "MAX_TOKEN_CHARS",
    "new_token",
    "token_sha256",
    "check_name",
    "check_role",
    "bearer_token",
    "query_params",
]

ROLES = ("control", "view")
MAX_TOKEN_CHARS = 256  # longer is never one of ours; refuse before hashing
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def new_token() -> str:
    """A fresh token: 24 random bytes, URL-safe base64 (32 characters).

    Never starting with ``-``, so ``--token T`` parses as a flag and its value.
    """
    while True:
        token = secrets.token_urlsafe(24)
        if not token.startswith("-"):
            return token


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    """A user name: 1-64 of letters, digits, ``_.-``, not starting with punctuation."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"invalid user name {name!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"invalid role {role!r}: use one of {', '.join(ROLES)}")
    return role


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer T`` header, if any."""
    value = headers.get("Authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def query_params(path: str) -> tuple[str, dict[str, str]]:
    """Split a request target into its path and its query (last value of each key wins)."""
    parts = urlsplit(path)
    params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return parts.path, params
