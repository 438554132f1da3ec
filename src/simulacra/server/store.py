"""Users and their tokens, in SQLite (WAL) at ``data_dir/simulacra.db``.

::

    Store(data_dir) ─► simulacra.db   users(name, role, token_sha256, created)
                   └─► admin.token    (0600) the admin's token, so `serve` can print its URL

Calls are blocking and short; the server runs them through ``asyncio.to_thread``.
One connection guarded by a lock serves every thread.
"""

from __future__ import annotations

import hmac
import sqlite3
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from simulacra.errors import ConfigError, NotFound
from simulacra.fsutil import write_atomic
from simulacra.server.auth import (
    MAX_TOKEN_CHARS,
    check_name,
    check_role,
    new_token,
    token_sha256,
)

__all__ = [
    "User",
    "Store",
    "open_database",
    "DatabaseTables",
    "ADMIN_NAME",
    "ADMIN_TOKEN_FILE",
    "DB_FILE",
]

ADMIN_NAME = "admin"
ADMIN_TOKEN_FILE = "admin.token"
DB_FILE = "simulacra.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('control', 'view')),
    token_sha256 TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
"""


def open_database(data_dir: Path, schema: str) -> sqlite3.Connection:
    """A connection of its own to ``data_dir/simulacra.db`` (WAL, busy timeout), ``schema`` run.

    Every part (users, files, outbox) opens one; they may live in other processes
    (two nodes on one data directory), so waits for the write lock are bounded.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(data_dir / DB_FILE, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(schema)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot use data directory {data_dir}: {exc}") from exc
    return db


class DatabaseTables:
    """Some tables of ``simulacra.db`` behind a connection and a lock of their own."""

    _db: sqlite3.Connection
    _lock: AbstractContextManager[bool]  # threading.Lock or RLock

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str  # "control" | "view"
    created: float


class Store(DatabaseTables):
    """The metadata database of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._db = open_database(self.data_dir, _SCHEMA)
        self._lock = threading.Lock()

    def add_user(self, name: str, role: str = "control") -> str:
        """Create a user; return its token (the only time it exists in clear)."""
        check_name(name)
        check_role(role)
        token = new_token()
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO users (name, role, token_sha256, created) VALUES (?, ?, ?, ?)",
                    (name, role, token_sha256(token), time.time()),
                )
        except sqlite3.IntegrityError as exc:
            raise ConfigError(f"user {name!r} already exists") from exc
        return token

    def set_token(self, name: str) -> str:
        """Give an existing user a new token; the old one stops working."""
        token = new_token()
        with self._lock:
            cur = self._db.execute(
                "UPDATE users SET token_sha256 = ? WHERE name = ?", (token_sha256(token), name)
            )
        if cur.rowcount != 1:
            raise NotFound(f"no user {name!r}")
        return token

    def users(self) -> list[User]:
        with self._lock:
            rows = self._db.execute("SELECT name, role, created FROM users ORDER BY id").fetchall()
        return [User(*row) for row in rows]

    def authenticate(self, token: str | None) -> User | None:
        """The user holding ``token``, or None for a missing or unknown one."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = token_sha256(token)
        with self._lock:
            row = self._db.execute(
                "SELECT name, role, created, token_sha256 FROM users WHERE token_sha256 = ?",
                (digest,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[3], digest):
            return None
        return User(row[0], row[1], row[2])

    def ensure_admin(self) -> str:
        """The admin token: read from admin.token, or made (with the admin user) on first start.

        A missing or stale token file gets a fresh token, so the URL printed at
        start always works.
        """
        path = self.data_dir / ADMIN_TOKEN_FILE
        try:
            token = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            token = ""
        user = self.authenticate(token)
        if user is not None and user.name == ADMIN_NAME:
            return token
        if any(u.name == ADMIN_NAME for u in self.users()):
            token = self.set_token(ADMIN_NAME)
        else:
            token = self.add_user(ADMIN_NAME, "control")
        # Created 0600, so the token is never briefly readable by others.
        write_atomic(path, (token + "\n").encode("ascii"), mode=0o600)
        return token
