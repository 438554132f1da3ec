"""The user store: SQLite in the data directory, tokens kept only as hashes."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from simulacra.errors import ConfigError, NotFound
from simulacra.server.auth import token_sha256
from simulacra.server.store import ADMIN_TOKEN_FILE, DB_FILE, Store


def test_first_start_creates_admin_and_token_file(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        token = store.ensure_admin()
        assert store.ensure_admin() == token  # read back, not rotated
        assert [(u.name, u.role) for u in store.users()] == [("admin", "control")]
    path = tmp_path / ADMIN_TOKEN_FILE
    assert path.read_text() == token + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) == 32  # 24 random bytes, URL-safe base64
    with Store(tmp_path) as store:
        assert store.ensure_admin() == token
        user = store.authenticate(token)
        assert user is not None and (user.name, user.role) == ("admin", "control")


def test_tokens_are_stored_hashed_in_wal_mode(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        token = store.add_user("bob", "view")
    db = sqlite3.connect(tmp_path / DB_FILE)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    rows = db.execute("SELECT name, role, token_sha256 FROM users").fetchall()
    assert rows == [("bob", "view", token_sha256(token))]
    db.close()
    assert token.encode() not in (tmp_path / DB_FILE).read_bytes()


def test_authenticate_rejects_unknown_and_odd_tokens(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        token = store.add_user("bob")
        assert store.authenticate(token) is not None
        for bad in (None, "", token[:-1], token + "x", "x" * 10_000):
            assert store.authenticate(bad) is None


def test_lost_token_file_rotates_admin_token(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        old = store.ensure_admin()
        (tmp_path / ADMIN_TOKEN_FILE).unlink()
        new = store.ensure_admin()
        assert new != old
        assert store.authenticate(old) is None
        assert store.authenticate(new) is not None
        assert len(store.users()) == 1


def test_bad_users(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        store.add_user("bob")
        with pytest.raises(ConfigError, match="already exists"):
            store.add_user("bob")
        with pytest.raises(ConfigError, match="invalid role"):
            store.add_user("carol", "root")
        for name in ("", "../x", "a b", "x" * 65, "-dash"):
            with pytest.raises(ConfigError, match="invalid user name"):
                store.add_user(name)
        with pytest.raises(NotFound):
            store.set_token("nobody")


def test_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot use data directory"):
        Store(blocker)
