"""The outbox: MQTT messages stored in SQLite before they are published.

::

    enqueue(topic, payload) ─► INSERT outbox row (sent NULL)        never waits on a broker
    enqueue_notification(id, user, inbox_id, …) ─► notifications row + outbox row, one transaction
    publisher (one per node, MqttBus):
        claim(node) ─► UPDATE … SET claimed_by=node, claim_until=now+lease
                       WHERE sent IS NULL AND next_attempt <= now
                       AND (claimed_by IS NULL OR claim_until < now)      oldest rows first
        publish QoS 1 ─► PUBACK ─► mark_sent(id)
                     └─ error ─► release(id): attempts+1, next_attempt = now + backoff

Several nodes may share one database: a claim is a lease, so a row is published
by one node at a time, and a node that dies mid-publish leaves rows that another
node takes over once the lease runs out. Delivery is at least once (a PUBACK lost
with its connection means the row is published again); receivers de-duplicate
by the notification id inside the payload.

``notifications`` maps the opaque id on the wire to the inbox row it announces,
so any node sharing the database can resolve it and no id reveals a row number.
The tables live in ``data_dir/simulacra.db`` next to the server's own tables; the
outbox opens its own connection (WAL, busy timeout), so calls are blocking and
short and the bus runs them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from simulacra.errors import ConfigError, PayloadTooBig
from simulacra.server.store import DatabaseTables, open_database

__all__ = [
    "Outbox",
    "OutboxRow",
    "OUTBOX_SCHEMA",
    "MAX_TOPIC_CHARS",
    "MAX_PAYLOAD_BYTES",
    "insert_row",
    "retry_delay",
]

MAX_TOPIC_CHARS = 256
MAX_PAYLOAD_BYTES = 4096  # notifications are ids and timestamps, never content
LEASE_SECONDS = 30.0
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 5.0

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    sent REAL NULL,
    claimed_by TEXT NULL,
    claim_until REAL NULL
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (next_attempt) WHERE sent IS NULL;
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    inbox_id INTEGER NOT NULL,
    created REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: str
    topic: str
    payload: bytes
    created: float
    attempts: int


def retry_delay(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: 0.5, 1, 2, 4, 5, 5, ..."""
    # The exponent stops growing long after the cap: a row failing for days must not
    # overflow a float (2 ** 1100 does).
    return min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** min(max(0, attempts - 1), 64))


def _check(topic: str, payload: bytes) -> None:
    if not topic or len(topic) > MAX_TOPIC_CHARS or "+" in topic or "#" in topic:
        raise ConfigError(f"invalid MQTT topic for the outbox: {topic[:80]!r}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadTooBig(
            f"outbox payload is {len(payload)} bytes, the limit is {MAX_PAYLOAD_BYTES}"
        )


def insert_row(db: sqlite3.Connection, topic: str, payload: bytes, *, now: float) -> str:
    """Insert one row through ``db``, so a caller can enqueue inside its own transaction.

    The caller's connection must already have run ``OUTBOX_SCHEMA`` (an ``Outbox`` on the
    same database does so when it opens).
    """
    _check(topic, payload)
    row_id = secrets.token_urlsafe(12)
    db.execute(
        "INSERT INTO outbox (id, topic, payload, created, next_attempt) VALUES (?, ?, ?, ?, ?)",
        (row_id, topic, payload, now, now),
    )
    return row_id


class Outbox(DatabaseTables):
    """The ``outbox`` table of one data directory, through a connection of its own."""

    def __init__(self, data_dir: Path, *, lease_seconds: float = LEASE_SECONDS) -> None:
        self.data_dir = Path(data_dir)
        self.lease_seconds = lease_seconds
        self._db = open_database(self.data_dir, OUTBOX_SCHEMA)
        self._lock = threading.Lock()

    def enqueue(self, topic: str, payload: bytes, *, now: float | None = None) -> str:
        """Store a message to publish; returns the row id."""
        with self._lock:
            return insert_row(self._db, topic, payload, now=time.time() if now is None else now)

    def enqueue_notification(
        self,
        notification_id: str,
        user: str,
        inbox_id: int,
        topic: str,
        payload: bytes,
        *,
        now: float | None = None,
    ) -> str:
        """Store the id -> (user, inbox row) mapping and its message in one transaction."""
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO notifications (id, user, inbox_id, created) VALUES (?, ?, ?, ?)",
                    (notification_id, user, inbox_id, now),
                )
                row_id = insert_row(self._db, topic, payload, now=now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return row_id

    def lookup_notification(self, notification_id: str) -> tuple[str, int, float] | None:
        """``(user, inbox_id, created)`` of a notification id, if this database knows it."""
        with self._lock:
            row = self._db.execute(
                "SELECT user, inbox_id, created FROM notifications WHERE id = ?",
                (notification_id,),
            ).fetchone()
        return None if row is None else (row[0], int(row[1]), float(row[2]))

    def claim(self, node: str, *, limit: int = 64, now: float | None = None) -> list[OutboxRow]:
        """Lease the oldest due, unsent rows to ``node``; oldest first."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                """
                UPDATE outbox SET claimed_by = ?, claim_until = ?
                WHERE id IN (
                    SELECT id FROM outbox
                    WHERE sent IS NULL AND next_attempt <= ?
                      AND (claimed_by IS NULL OR claim_until < ?)
                    ORDER BY rowid LIMIT ?)
                RETURNING rowid, id, topic, payload, created, attempts
                """,
                (node, now + self.lease_seconds, now, now, limit),
            ).fetchall()
        # RETURNING gives no order guarantee; rowid is insertion order.
        rows.sort(key=lambda r: r[0])
        return [OutboxRow(r[1], r[2], bytes(r[3]), r[4], r[5]) for r in rows]

    def mark_sent(self, row_id: str, *, now: float | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET sent = ?, claimed_by = NULL, claim_until = NULL WHERE id = ?",
                (time.time() if now is None else now, row_id),
            )

    def release(self, row_ids: list[str], *, now: float | None = None) -> None:
        """Give claimed, unpublished rows back, each retried after its backoff."""
        now = time.time() if now is None else now
        with self._lock:
            for row_id in row_ids:
                attempts = self._db.execute(
                    "SELECT attempts FROM outbox WHERE id = ? AND sent IS NULL", (row_id,)
                ).fetchone()
                if attempts is None:
                    continue
                tries = attempts[0] + 1
                self._db.execute(
                    "UPDATE outbox SET attempts = ?, next_attempt = ?, claimed_by = NULL,"
                    " claim_until = NULL WHERE id = ?",
                    (tries, now + retry_delay(tries), row_id),
                )

    def pending(self) -> int:
        """Rows not yet acknowledged by a broker."""
        with self._lock:
            return int(
                self._db.execute("SELECT COUNT(*) FROM outbox WHERE sent IS NULL").fetchone()[0]
            )

    def next_due(self) -> float | None:
        """When the earliest unsent row may be tried (None: nothing waits)."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(MAX(next_attempt, COALESCE(claim_until, 0))) FROM outbox"
                " WHERE sent IS NULL"
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def purge_sent(self, older_than: float) -> int:
        """Forget rows sent, and notification ids made, before ``older_than``; returns rows."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM outbox WHERE sent IS NOT NULL AND sent < ?", (older_than,)
            )
            self._db.execute("DELETE FROM notifications WHERE created < ?", (older_than,))
        return cur.rowcount
