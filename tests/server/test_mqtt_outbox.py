"""The outbox: stored before published, leased to one node at a time, retried with backoff."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulacra.errors import ConfigError, PayloadTooBig
from simulacra.server.outbox import (
    MAX_PAYLOAD_BYTES,
    OUTBOX_SCHEMA,
    Outbox,
    OutboxRow,
    insert_row,
    retry_delay,
)
from simulacra.server.store import DB_FILE, Store

T0 = 1_000_000.0


def test_rows_are_claimed_oldest_first_and_stay_until_sent(tmp_path: Path) -> None:
    with Outbox(tmp_path) as box:
        ids = [box.enqueue(f"t/{i}", b"p%d" % i, now=T0 + i) for i in range(5)]
        assert box.pending() == 5
        rows = box.claim("a", limit=3, now=T0 + 10)
        assert rows == [OutboxRow(ids[i], f"t/{i}", b"p%d" % i, T0 + i, 0) for i in range(3)]
        for row in rows:
            box.mark_sent(row.id, now=T0 + 11)
        assert box.pending() == 2
        assert [r.id for r in box.claim("a", now=T0 + 12)] == ids[3:]
        assert box.claim("a", now=T0 + 12) == []  # leased already


def test_enqueue_order_wins_over_clock(tmp_path: Path) -> None:
    # A clock stepping back must not reorder notifications.
    with Outbox(tmp_path) as box:
        first = box.enqueue("t", b"1", now=T0 + 5)
        second = box.enqueue("t", b"2", now=T0)
        assert [r.id for r in box.claim("a", now=T0 + 10)] == [first, second]


def test_two_nodes_on_one_database_never_claim_the_same_row(tmp_path: Path) -> None:
    with Outbox(tmp_path) as a, Outbox(tmp_path) as b:
        ids = [a.enqueue("t", b"%d" % i, now=T0) for i in range(6)]
        got_a = a.claim("node-a", limit=4, now=T0 + 1)
        got_b = b.claim("node-b", limit=4, now=T0 + 1)
        assert [r.id for r in got_a] == ids[:4]
        assert [r.id for r in got_b] == ids[4:]
        db = sqlite3.connect(tmp_path / DB_FILE)
        owners = dict(db.execute("SELECT id, claimed_by FROM outbox").fetchall())
        db.close()
        assert owners == {**dict.fromkeys(ids[:4], "node-a"), **dict.fromkeys(ids[4:], "node-b")}


def test_a_dead_nodes_lease_runs_out_and_another_node_takes_over(tmp_path: Path) -> None:
    with Outbox(tmp_path, lease_seconds=30) as a, Outbox(tmp_path) as b:
        row_id = a.enqueue("t", b"x", now=T0)
        assert [r.id for r in a.claim("node-a", now=T0)] == [row_id]
        assert b.claim("node-b", now=T0 + 29) == []
        assert [r.id for r in b.claim("node-b", now=T0 + 31)] == [row_id]


def test_release_counts_attempts_and_backs_off(tmp_path: Path) -> None:
    with Outbox(tmp_path) as box:
        row_id = box.enqueue("t", b"x", now=T0)
        now = T0
        for attempt in range(1, 6):
            assert [r.attempts for r in box.claim("a", now=now)] == [attempt - 1]
            box.release([row_id], now=now)
            assert box.next_due() == now + retry_delay(attempt)
            assert box.claim("a", now=now + retry_delay(attempt) - 0.01) == []
            now += retry_delay(attempt)
        box.mark_sent(row_id, now=now)
        box.release([row_id], now=now)  # a late release of a sent row changes nothing
        assert box.pending() == 0
        assert box.next_due() is None


def test_retry_delay_doubles_up_to_the_cap() -> None:
    assert [retry_delay(n) for n in range(8)] == [0.5, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert retry_delay(100_000) == 5.0  # a row failing for days still waits, never overflows


def test_purge_forgets_only_old_sent_rows(tmp_path: Path) -> None:
    with Outbox(tmp_path) as box:
        old = box.enqueue("t", b"1", now=T0)
        new = box.enqueue("t", b"2", now=T0)
        unsent = box.enqueue("t", b"3", now=T0)
        box.mark_sent(old, now=T0 + 1)
        box.mark_sent(new, now=T0 + 100)
        assert box.purge_sent(T0 + 50) == 1
        assert [r.id for r in box.claim("a", now=T0 + 200)] == [unsent]
        assert box.pending() == 1


def test_limits(tmp_path: Path) -> None:
    with Outbox(tmp_path) as box:
        box.enqueue("t", b"x" * MAX_PAYLOAD_BYTES)
        with pytest.raises(PayloadTooBig):
            box.enqueue("t", b"x" * (MAX_PAYLOAD_BYTES + 1))
        for topic in ("", "a/+/b", "a/#", "x" * 257):
            with pytest.raises(ConfigError):
                box.enqueue(topic, b"x")
        assert box.pending() == 1


def test_insert_row_joins_the_callers_transaction(tmp_path: Path) -> None:
    with Outbox(tmp_path) as box:
        db = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
        db.executescript(OUTBOX_SCHEMA)  # idempotent
        db.execute("BEGIN")
        kept = insert_row(db, "t", b"kept", now=T0)
        db.execute("COMMIT")
        db.execute("BEGIN")
        insert_row(db, "t", b"rolled back", now=T0)
        db.execute("ROLLBACK")
        db.close()
        assert [(r.id, r.payload) for r in box.claim("a", now=T0)] == [(kept, b"kept")]


def test_outbox_shares_the_servers_database_in_wal_mode(tmp_path: Path) -> None:
    with Store(tmp_path) as store, Outbox(tmp_path) as box:
        store.add_user("bob")
        box.enqueue("t", b"x")
    db = sqlite3.connect(tmp_path / DB_FILE)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert {"users", "outbox"} <= tables


def test_unusable_data_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError):
        Outbox(blocker)


# Few examples: each one is a fresh database on disk.
@settings(max_examples=15, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=12))
def test_every_payload_comes_back_exactly_once_in_order(payloads: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp, Outbox(Path(tmp)) as box:
        ids = [box.enqueue("t", p, now=T0) for p in payloads]
        seen: list[tuple[str, bytes]] = []
        while rows := box.claim("a", limit=3, now=T0):
            for row in rows:
                seen.append((row.id, row.payload))
                box.mark_sent(row.id, now=T0)
        assert seen == list(zip(ids, payloads, strict=True))


def test_a_notification_and_its_message_are_stored_together(tmp_path: Path) -> None:
    with Outbox(tmp_path) as box:
        row_id = box.enqueue_notification("nid-0000001", "bob", 7, "t/bob", b"{}", now=T0)
        assert box.lookup_notification("nid-0000001") == ("bob", 7, T0)
        assert box.lookup_notification("nid-missing") is None
        assert [r.id for r in box.claim("a", now=T0)] == [row_id]
        # A reused id fails as a whole: no message without its mapping, or the reverse.
        with pytest.raises(sqlite3.IntegrityError):
            box.enqueue_notification("nid-0000001", "eve", 8, "t/eve", b"{}", now=T0)
        with pytest.raises(PayloadTooBig):
            box.enqueue_notification("nid-0000002", "eve", 8, "t/eve", b"x" * 5000, now=T0)
        assert box.pending() == 1
        assert box.lookup_notification("nid-0000002") is None
        box.mark_sent(row_id, now=T0 + 1)
        box.purge_sent(T0 + 2)
        assert box.lookup_notification("nid-0000001") is None
