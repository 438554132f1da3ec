"""Files, viewer dictionaries and regeneration codes: the blocking store behind the files API.

::

    put:    Upload (uploads/<id>.part, size + sha256 checked) ─► BlobStore (blocks)
                ─► files row ─► entries row (owner's viewer dictionary, rights "owner")
    share:  owner's entry ─► code = base32(16 random bytes), 26 chars
                ─► codes row (sha256 of the code only; recipient | anyone, rights, expiry, uses)
                ─► inbox row for a named recipient (delivered live or on next connect)
    redeem: rate limit ─► sha256(code) ─► checks: known, for this user, not revoked,
                not expired, uses left ─► entries row in the recipient's viewer dictionary
                (name, size, type, rights, locator: never bytes)
    read:   entry (rights download|owner) ─► BlobStore range ─► checked bytes

Tables live in ``data_dir/simulacra.db`` next to the server's users (own WAL
connection); blobs in ``data_dir/blobs``, dictionaries in ``data_dir/dictionaries``.
Calls are blocking and short, except ``Upload.commit`` (compression): run them
off the event loop. Every action that grants or refuses access lands in ``audit``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import mimetypes
import re
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulacra.codecs.files.blobstore import DEFAULT_BLOCK_SIZE, BlobStore, remove_stale
from simulacra.codecs.files.dictionary import DictionaryStore, train_viewer_dictionary
from simulacra.errors import (
    CodeError,
    CodeExpired,
    CodeRevoked,
    ConfigError,
    Forbidden,
    InvalidState,
    NotFound,
    PayloadTooBig,
    ProtocolError,
    RateLimited,
)
from simulacra.server.store import DatabaseTables, open_database

log = logging.getLogger("simulacra.server.files")

__all__ = [
    "FilesStore",
    "Upload",
    "Entry",
    "Share",
    "InboxItem",
    "FailureLimiter",
    "AuditedFailureLimiter",
    "new_code",
    "normalize_code",
    "code_sha256",
    "parse_ttl",
    "RIGHTS",
    "MAX_UPLOAD_BYTES",
    "DEFAULT_TTL_S",
    "CODE_CHARS",
]

RIGHTS = ("view", "download")
ENTRY_RIGHTS = ("owner", *RIGHTS)
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
DEFAULT_TTL_S = 7 * 86400
MAX_TTL_S = 365 * 86400
MAX_USES = 1_000_000
CODE_CHARS = 26  # base32 of 16 random bytes, no padding
MAX_NAME_CHARS = 255
MAX_TYPE_CHARS = 127
_CODE_RE = re.compile(r"[A-Z2-7]{26}")
_ENTRY_RE = re.compile(r"[0-9a-f]{16}")
_SHA_RE = re.compile(r"[0-9a-f]{64}")
_TTL_RE = re.compile(r"(\d{1,9})([smhd]?)")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# New dictionary versions once the store holds this many files, then 4x as many, ...
_TRAIN_FIRST = 16
_TRAIN_GROWTH = 4
_TRAIN_SAMPLES = 512

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    type TEXT NOT NULL,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    dictionary_id TEXT,
    block_size INTEGER NOT NULL,
    stored_bytes INTEGER NOT NULL,
    block_codecs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_sha256 ON files (sha256);
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    file_id INTEGER NOT NULL REFERENCES files (id),
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    type TEXT NOT NULL,
    rights TEXT NOT NULL CHECK (rights IN ('owner', 'view', 'download')),
    locator TEXT NOT NULL,
    code_id INTEGER REFERENCES codes (id),
    sender TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_user ON entries (user);
CREATE TABLE IF NOT EXISTS codes (
    id INTEGER PRIMARY KEY,
    code_sha256 TEXT NOT NULL UNIQUE,
    file_id INTEGER NOT NULL REFERENCES files (id),
    entry_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    recipient TEXT,
    rights TEXT NOT NULL CHECK (rights IN ('view', 'download')),
    expires REAL NOT NULL,
    uses_left INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    code_id INTEGER NOT NULL REFERENCES codes (id),
    sender TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    type TEXT NOT NULL,
    rights TEXT NOT NULL,
    expires REAL NOT NULL,
    created REAL NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS inbox_user ON inbox (user, delivered);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_user_action_ts ON audit (user, action, ts);
CREATE TABLE IF NOT EXISTS files_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


# -- codes -----------------------------------------------------------------------


def new_code() -> str:
    """A fresh regeneration code: 128 random bits as 26 base32 characters."""
    return base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")


def normalize_code(text: str) -> str:
    """Accept a code as typed (any case, dashes, spaces); ``CodeError`` if it cannot be one."""
    code = text.strip().upper().replace("-", "").replace(" ", "")
    if not _CODE_RE.fullmatch(code):
        raise CodeError("not a regeneration code (26 characters A-Z, 2-7)")
    return code


def code_sha256(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def parse_ttl(text: str | int | float) -> float:
    """``7d``, ``12h``, ``30m``, ``90s`` or seconds -> seconds (1 s .. 365 days)."""
    if isinstance(text, bool):
        raise ConfigError(f"invalid ttl {text!r}: use e.g. 7d, 12h, 30m or 90s")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        found = _TTL_RE.fullmatch(text.strip().lower())
        if found is None:
            raise ConfigError(f"invalid ttl {text!r}: use e.g. 7d, 12h, 30m or 90s")
        seconds = float(int(found.group(1)) * _TTL_UNITS[found.group(2)])
    if not 1 <= seconds <= MAX_TTL_S:
        raise ConfigError(f"ttl must be between 1 s and 365 days, got {text!r}")
    return seconds


class FailureLimiter:
    """At most ``limit`` failed redeems per user in any ``window`` seconds."""

    def __init__(
        self, limit: int = 20, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, user: str) -> deque[float]:
        times = self._failures.setdefault(user, deque())
        cutoff = self.clock() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        return times

    def check(self, user: str) -> None:
        with self._lock:
            times = self._recent(user)
            if len(times) >= self.limit:
                raise _rate_limited(self.limit, self.window, times[0] - self.clock())

    def record(self, user: str) -> None:
        with self._lock:
            self._recent(user).append(self.clock())


def _rate_limited(limit: int, window: float, oldest_age: float) -> RateLimited:
    """The refusal once ``limit`` failures fell in ``window``; ``oldest_age`` is negative."""
    wait = max(1, int(oldest_age + window + 0.999))
    return RateLimited(f"too many failed codes ({limit} per {window:g} s); try again in {wait} s")


class AuditedFailureLimiter:
    """``FailureLimiter``'s rule, counted from the audit log's ``redeem_refused`` rows.

    Every node on this database sees the same failures and a restart forgets none;
    counted in memory, N nodes (or a restart) would multiply a guesser's tries.
    ``record`` has nothing to do: ``FilesStore`` audits every refusal anyway.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        lock: threading.RLock,
        clock: Callable[[], float],
        *,
        limit: int = 20,
        window: float = 60.0,
    ) -> None:
        self._db, self._lock, self.clock = db, lock, clock
        self.limit, self.window = limit, window

    def check(self, user: str) -> None:
        now = self.clock()
        with self._lock:
            count, oldest = self._db.execute(
                "SELECT COUNT(*), MIN(ts) FROM audit"
                " WHERE user = ? AND action = 'redeem_refused' AND ts > ?",
                (user, now - self.window),
            ).fetchone()
        if count >= self.limit:
            raise _rate_limited(self.limit, self.window, oldest - now)

    def record(self, user: str) -> None:
        return None


# -- records ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of a user's viewer dictionary: what the file is and where it lives."""

    id: str
    user: str
    name: str
    size: int
    type: str
    rights: str  # "owner" | "view" | "download"
    locator: str
    sender: str
    created: float
    sha256: str  # only shown to users who may hold the bytes
    file_id: int

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "type": self.type,
            "rights": self.rights,
            "locator": self.locator,
            "from": self.sender,
            "created": self.created,
        }
        if self.rights in ("owner", "download"):
            out["sha256"] = self.sha256
        return out


@dataclass(frozen=True, slots=True)
class Share:
    code: str  # the only time the code exists in clear
    code_id: int
    entry_id: str
    recipient: str | None
    rights: str
    expires: float
    uses: int
    inbox: InboxItem | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "code_id": self.code_id,
            "entry": self.entry_id,
            "to": self.recipient,
            "rights": self.rights,
            "expires": self.expires,
            "uses": self.uses,
        }


@dataclass(frozen=True, slots=True)
class InboxItem:
    """A share addressed to a user: what it is, never the code or the bytes."""

    id: int
    user: str
    code_id: int
    sender: str
    name: str
    size: int
    type: str
    rights: str
    expires: float
    created: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "inbox": self.id,
            "from": self.sender,
            "name": self.name,
            "size": self.size,
            "type": self.type,
            "rights": self.rights,
            "expires": self.expires,
            "created": self.created,
        }


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
        raise ProtocolError(f"file name must be 1-{MAX_NAME_CHARS} characters")
    if any(c in name for c in "/\\\x00") or name in (".", ".."):
        raise ProtocolError(f"file name must not contain / \\ or NUL: {name[:80]!r}")
    return name


def guess_type(name: str) -> str:
    found, _ = mimetypes.guess_type(name)
    return found or "application/octet-stream"


# -- uploads -----------------------------------------------------------------------


@dataclass(eq=False)
class Upload:
    """One file arriving in order; nothing of it stays unless ``commit`` succeeds."""

    store: FilesStore
    user: str
    name: str
    size: int
    type: str
    sha256: str
    path: Path
    received: int = 0
    _hasher: Any = field(default_factory=hashlib.sha256)
    _fh: Any = None
    finished: bool = False

    def write(self, offset: int, data: bytes) -> int:
        """Append ``data`` at ``offset`` (must be the next byte); return bytes received."""
        if self.finished:
            raise InvalidState("upload is finished")
        if offset != self.received:
            raise ProtocolError(f"chunk at offset {offset}, expected {self.received}")
        if self.received + len(data) > self.size:
            raise PayloadTooBig(
                f"upload of {self.name!r} sends more than the {self.size} bytes announced"
            )
        if self._fh is None:
            self._fh = open(self.path, "r+b")  # noqa: SIM115 (closed by commit/abort)
        self._fh.write(data)
        self._hasher.update(data)
        self.received += len(data)
        return self.received

    def commit(self) -> Entry:
        """Check size and sha256, store the blocks, add the owner's entry."""
        if self.finished:
            raise InvalidState("upload is finished")
        try:
            if self.received != self.size:
                raise ProtocolError(f"upload has {self.received} of {self.size} bytes")
            if self._hasher.hexdigest() != self.sha256:
                raise ProtocolError("uploaded bytes do not match the announced sha256")
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            return self.store.add_file(self.user, self.name, self.type, self.path, self.sha256)
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the temporary file (idempotent)."""
        self.finished = True
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.path.unlink(missing_ok=True)


# -- the store -------------------------------------------------------------------


class FilesStore(DatabaseTables):
    """Files, entries, codes, inboxes and the audit log of one data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        max_upload: int = MAX_UPLOAD_BYTES,
        try_emulator: bool = True,
        limiter: FailureLimiter | AuditedFailureLimiter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.max_upload = max_upload
        self.clock = clock
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.uploads_dir = self.data_dir / "uploads"
            self.uploads_dir.mkdir(exist_ok=True)
            remove_stale(self.uploads_dir.glob("*.part"), now=time.time())
            self.dictionaries = DictionaryStore(self.data_dir / "dictionaries")
            self.blobs = BlobStore(
                self.data_dir / "blobs",
                self.dictionaries,
                block_size=block_size,
                try_emulator=try_emulator,
            )
        except OSError as exc:
            raise ConfigError(f"cannot use data directory {self.data_dir}: {exc}") from exc
        self._db = open_database(self.data_dir, _SCHEMA)
        # WAL + NORMAL: a commit is durable once the WAL is synced at checkpoints; a
        # crash can lose the last moments but never corrupts (and audit rows stay cheap).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.RLock()
        # None: counted in the shared database (every node, every restart sees them).
        self.limiter = (
            limiter if limiter is not None else AuditedFailureLimiter(self._db, self._lock, clock)
        )
        removed = self.remove_orphan_blobs()
        if removed:
            log.info("removed %d stored blobs that no file names", removed)

    def remove_orphan_blobs(self, *, now: float | None = None) -> int:
        """Remove blobs no file row names: a put whose row insert failed, or a crash between
        the two, leaves one. Old ones only (``STALE_AFTER_S``, as with uploads): another
        node sharing this directory may be between its put and its insert right now, and
        a put that finds its blob already stored touches it first."""
        with self._lock:
            named = {sha for (sha,) in self._db.execute("SELECT DISTINCT sha256 FROM files")}
        orphans = (
            path
            for path in self.blobs.root.glob("??/*")
            if path.is_dir() and path.name not in named and not path.name.startswith(".")
        )
        return remove_stale(orphans, now=time.time() if now is None else now)

    # -- helpers ---------------------------------------------------------------

    def _audit(self, user: str, action: str, **detail: Any) -> None:
        self._db.execute(
            "INSERT INTO audit (ts, user, action, detail) VALUES (?, ?, ?, ?)",
            (self.clock(), user, action, json.dumps(detail, sort_keys=True)),
        )

    def audit_log(self, limit: int = 100) -> list[tuple[float, str, str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, user, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [(ts, u, a, json.loads(d)) for ts, u, a, d in rows]

    def user_exists(self, name: str) -> bool:
        with self._lock:
            try:
                row = self._db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone()
            except sqlite3.OperationalError:  # no users table: a store without a server
                return False
        return row is not None

    _ENTRY_SQL = (
        "SELECT e.id, e.user, e.name, e.size, e.type, e.rights, e.locator, e.sender, e.created,"
        " f.sha256, e.file_id, e.code_id FROM entries e JOIN files f ON f.id = e.file_id"
    )

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> Entry:
        return Entry(*row[:11])

    def _insert_entry(
        self,
        user: str,
        file_id: int,
        name: str,
        size: int,
        type_: str,
        rights: str,
        sender: str,
        code_id: int | None,
    ) -> str:
        entry_id = secrets.token_hex(8)
        # The locator is the file's "embedding position": which file and how it is cut,
        # enough for the server to regenerate it, and nothing of its content.
        row = self._db.execute(
            "SELECT block_size, dictionary_id FROM files WHERE id = ?", (file_id,)
        ).fetchone()
        locator = f"f{file_id}.b{row[0]}.d{(row[1] or 'none')[:12]}"
        self._db.execute(
            "INSERT INTO entries (id, user, file_id, name, size, type, rights, locator, code_id,"
            " sender, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry_id,
                user,
                file_id,
                name,
                size,
                type_,
                rights,
                locator,
                code_id,
                sender,
                self.clock(),
            ),
        )
        return entry_id

    # -- uploads ---------------------------------------------------------------

    def begin_upload(self, user: str, name: str, size: int, type_: str, sha256: str) -> Upload:
        """Reserve a temporary file for an upload announced with its size and sha256."""
        _check_name(name)
        if not isinstance(size, int) or size < 0:
            raise ProtocolError("size must be a non-negative integer")
        if size > self.max_upload:
            raise PayloadTooBig(
                f"{name!r} is {size} bytes; the upload limit is {self.max_upload} bytes"
                f" ({self.max_upload // (1024 * 1024)} MiB)"
            )
        if not isinstance(sha256, str) or not _SHA_RE.fullmatch(sha256):
            raise ProtocolError("sha256 must be 64 lowercase hex digits")
        type_ = type_ or guess_type(name)
        if len(type_) > MAX_TYPE_CHARS:
            raise ProtocolError(f"type must be at most {MAX_TYPE_CHARS} characters")
        # Sweep what crashed writers left, here too: a node may run for months.
        remove_stale(self.uploads_dir.glob("*.part"), now=time.time())
        path = self.uploads_dir / f"{secrets.token_hex(12)}.part"
        with open(path, "xb"):
            pass
        return Upload(self, user, name, size, type_, sha256, path)

    def add_file(self, owner: str, name: str, type_: str, path: Path, sha256: str) -> Entry:
        """Store the file at ``path`` (already checked) and give its owner an entry."""
        size = path.stat().st_size
        with open(path, "rb") as fh:
            info = self.blobs.put(fh, sha256, size)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO files (sha256, name, size, type, owner, created, dictionary_id,"
                    " block_size, stored_bytes, block_codecs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        sha256,
                        name,
                        size,
                        type_,
                        owner,
                        self.clock(),
                        info.dictionary,
                        info.block_size,
                        info.stored_bytes,
                        json.dumps(info.codec_counts()),
                    ),
                )
                file_id = int(cur.lastrowid or 0)
                entry_id = self._insert_entry(
                    owner, file_id, name, size, type_, "owner", owner, None
                )
                self._audit(owner, "put", file=file_id, entry=entry_id, size=size)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self.maybe_train()
        return self.entry(owner, entry_id)

    def put_bytes(self, owner: str, name: str, data: bytes, type_: str = "") -> Entry:
        """Store ``data`` as a new file of ``owner`` (tests and tools; no socket)."""
        upload = self.begin_upload(owner, name, len(data), type_, hashlib.sha256(data).hexdigest())
        try:
            upload.write(0, data)
        except BaseException:
            upload.abort()
            raise
        return upload.commit()

    # -- the viewer dictionary ---------------------------------------------------

    def maybe_train(self) -> str | None:
        """Train a new dictionary version when the store has grown enough; its sha or None."""
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(DISTINCT sha256) FROM files").fetchone()
            row = self._db.execute(
                "SELECT value FROM files_meta WHERE key = 'next_training'"
            ).fetchone()
        threshold = int(row[0]) if row else _TRAIN_FIRST
        if count < threshold:
            return None
        trained = self.train_dictionary()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files_meta (key, value) VALUES ('next_training', ?)",
                (str(max(threshold, count) * _TRAIN_GROWTH),),
            )
        return trained

    def train_dictionary(self) -> str | None:
        """Train a dictionary on the first block of the newest stored files; make it current."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sha256, MAX(id) AS newest FROM files WHERE size >= 64"
                " GROUP BY sha256 ORDER BY newest DESC LIMIT ?",
                (_TRAIN_SAMPLES,),
            ).fetchall()
        samples = []
        for sha, _ in rows:
            samples.append(self.blobs.read(sha, 0, min(self.blobs.block_size, self._size(sha))))
        trained = train_viewer_dictionary(samples)
        if trained is None:
            return None
        self.dictionaries.add(trained)
        with self._lock:
            self._audit("server", "train_dictionary", sha256=trained.hex, samples=len(samples))
        return trained.hex

    def _size(self, sha: str) -> int:
        return self.blobs.info(sha).size

    # -- entries ---------------------------------------------------------------

    def entries(self, user: str) -> list[Entry]:
        """The user's viewer dictionary, oldest first (entries of revoked codes left out)."""
        with self._lock:
            rows = self._db.execute(
                self._ENTRY_SQL + " LEFT JOIN codes c ON c.id = e.code_id"
                " WHERE e.user = ? AND (c.id IS NULL OR c.revoked = 0) ORDER BY e.created, e.id",
                (user,),
            ).fetchall()
        return [self._entry(r) for r in rows]

    def entry(self, user: str, entry_id: str) -> Entry:
        """The user's entry ``entry_id``; ``NotFound`` for anyone else's or an unknown one."""
        if not isinstance(entry_id, str) or not _ENTRY_RE.fullmatch(entry_id):
            raise NotFound(f"no entry {str(entry_id)[:40]!r}")
        with self._lock:
            row = self._db.execute(
                self._ENTRY_SQL + " WHERE e.id = ? AND e.user = ?", (entry_id, user)
            ).fetchone()
            if row is None:
                raise NotFound(f"no entry {entry_id!r}")
            code_id = row[11]
            if code_id is not None:
                (revoked,) = self._db.execute(
                    "SELECT revoked FROM codes WHERE id = ?", (code_id,)
                ).fetchone()
                if revoked:
                    raise CodeRevoked(f"entry {entry_id} was shared with a code its owner revoked")
        return self._entry(row)

    def read(
        self, user: str, entry_id: str, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """The exact bytes of an entry the user may download (checked block by block)."""
        entry = self.entry(user, entry_id)
        if entry.rights not in ("owner", "download"):
            with self._lock:
                self._audit(user, "get_refused", entry=entry_id)
            raise Forbidden(f"entry {entry_id} is view-only: its bytes cannot be downloaded")
        with self._lock:
            self._audit(user, "get", entry=entry_id, start=start, end=end)
        if start == 0 and end in (None, entry.size):
            return self.blobs.iter_verified(entry.sha256)
        return self.blobs.iter_range(entry.sha256, start, end)

    def document_reader(
        self, user: str, entry_id: str
    ) -> tuple[Entry, Callable[[int, int], bytes]]:
        """An entry and a range reader for the server-side viewer (any rights)."""
        entry = self.entry(user, entry_id)
        sha = entry.sha256
        with self._lock:
            self._audit(user, "view", entry=entry_id)

        def read(start: int, end: int) -> bytes:
            return self.blobs.read(sha, start, end)

        return entry, read

    # -- codes -----------------------------------------------------------------

    def share(
        self,
        user: str,
        entry_id: str,
        *,
        to: str | None = None,
        rights: str = "view",
        ttl: str | float = DEFAULT_TTL_S,
        uses: int = 1,
        anyone: bool = False,
    ) -> Share:
        """Issue a code for the user's own file; a named recipient also gets an inbox item."""
        if rights not in RIGHTS:
            raise ConfigError(f"rights must be view or download, got {rights!r}")
        if not isinstance(uses, int) or not 1 <= uses <= MAX_USES:
            raise ConfigError(f"uses must be 1..{MAX_USES}, got {uses!r}")
        if anyone == (to is not None):
            raise ConfigError("give exactly one of: a recipient (--to USER) or --anyone")
        seconds = parse_ttl(ttl)
        entry = self.entry(user, entry_id)
        if entry.rights != "owner":
            raise Forbidden(f"only the owner of {entry.name!r} can share it")
        if to is not None and not self.user_exists(to):
            raise NotFound(f"no user {to!r}")
        code = new_code()
        now = self.clock()
        expires = now + seconds
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO codes (code_sha256, file_id, entry_id, owner, recipient, rights,"
                    " expires, uses_left, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        code_sha256(code),
                        entry.file_id,
                        entry.id,
                        user,
                        to,
                        rights,
                        expires,
                        uses,
                        now,
                    ),
                )
                code_id = int(cur.lastrowid or 0)
                item = None
                if to is not None:
                    row = (to, code_id, user, entry.name, entry.size, entry.type, rights)
                    cur = self._db.execute(
                        "INSERT INTO inbox (user, code_id, sender, name, size, type, rights,"
                        " expires, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (*row, expires, now),
                    )
                    item = InboxItem(int(cur.lastrowid or 0), *row, expires, now)
                self._audit(
                    user,
                    "share",
                    code=code_id,
                    entry=entry.id,
                    to=to,
                    rights=rights,
                    uses=uses,
                    expires=expires,
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Share(code, code_id, entry.id, to, rights, expires, uses, item)

    def revoke(self, user: str, code: str) -> int:
        """Revoke a code the user issued (by code, or ``#id`` as listed); its code id."""
        with self._lock:
            if code.startswith("#") and code[1:].isdigit():
                row = self._db.execute(
                    "SELECT id, owner FROM codes WHERE id = ?", (int(code[1:]),)
                ).fetchone()
            else:
                row = self._db.execute(
                    "SELECT id, owner FROM codes WHERE code_sha256 = ?",
                    (code_sha256(normalize_code(code)),),
                ).fetchone()
            if row is None or row[1] != user:
                raise NotFound("no such code of yours")
            self._db.execute("UPDATE codes SET revoked = 1 WHERE id = ?", (row[0],))
            self._audit(user, "revoke", code=row[0])
        return int(row[0])

    def entries_of_code(self, code_id: int) -> list[tuple[str, str]]:
        """(user, entry id) of every entry redeemed with ``code_id``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT user, id FROM entries WHERE code_id = ?", (code_id,)
            ).fetchall()
        return [(str(u), str(e)) for u, e in rows]

    def codes(self, user: str) -> list[dict[str, Any]]:
        """Codes the user issued (never the codes themselves: only their ids)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, entry_id, recipient, rights, expires, uses_left, revoked, created"
                " FROM codes WHERE owner = ? ORDER BY id",
                (user,),
            ).fetchall()
        keys = ("id", "entry", "to", "rights", "expires", "uses_left", "revoked", "created")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def _fail(self, user: str, exc: CodeError, **detail: Any) -> CodeError:
        self.limiter.record(user)
        self._audit(user, "redeem_refused", reason=type(exc).__name__, **detail)
        return exc

    def redeem(self, user: str, code: str | None = None, *, inbox: int | None = None) -> Entry:
        """Add the file a code (or an inbox item) points to to the user's viewer dictionary."""
        self.limiter.check(user)
        with self._lock:
            if inbox is not None:
                found = self._db.execute(
                    "SELECT code_id FROM inbox WHERE id = ? AND user = ?", (inbox, user)
                ).fetchone()
                if found is None:
                    raise self._fail(user, CodeError("no such inbox item of yours"), inbox=inbox)
                where, key = "id = ?", found[0]
            else:
                try:
                    normal = normalize_code(code or "")
                except CodeError as exc:
                    raise self._fail(user, exc) from None
                where, key = "code_sha256 = ?", code_sha256(normal)
                # Unknown codes (every guess) are refused without a write transaction.
                if (
                    self._db.execute("SELECT 1 FROM codes WHERE " + where, (key,)).fetchone()
                    is None
                ):
                    raise self._fail(user, CodeError("unknown regeneration code"))
            self._db.execute("BEGIN IMMEDIATE")
            try:
                entry_id = self._redeem_locked(user, where, key)
                self._db.execute("COMMIT")
            except CodeError as exc:
                self._db.execute("ROLLBACK")
                raise self._fail(user, exc) from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self.entry(user, entry_id)

    def _redeem_locked(self, user: str, where: str, key: Any) -> str:
        row = self._db.execute(
            "SELECT id, file_id, owner, recipient, rights, expires, uses_left, revoked"
            " FROM codes WHERE " + where,
            (key,),
        ).fetchone()
        if row is None:
            raise CodeError("unknown regeneration code")
        code_id, file_id, owner, recipient, rights, expires, uses_left, revoked = row
        if recipient is not None and recipient != user:
            raise CodeError("this code was issued to another user")
        if revoked:
            raise CodeRevoked("this code was revoked by its owner")
        existing = self._db.execute(
            "SELECT id FROM entries WHERE user = ? AND code_id = ?", (user, code_id)
        ).fetchone()
        if existing is not None:  # redeeming twice costs no second use
            return str(existing[0])
        if self.clock() >= expires:
            raise CodeExpired("this code has expired")
        if uses_left <= 0:
            raise CodeExpired("this code has no uses left")
        name, size, type_ = self._db.execute(
            "SELECT e.name, e.size, e.type FROM codes c JOIN entries e ON e.id = c.entry_id"
            " WHERE c.id = ?",
            (code_id,),
        ).fetchone()
        self._db.execute("UPDATE codes SET uses_left = uses_left - 1 WHERE id = ?", (code_id,))
        entry_id = self._insert_entry(user, file_id, name, size, type_, rights, owner, code_id)
        self._db.execute(
            "UPDATE inbox SET delivered = 1 WHERE user = ? AND code_id = ?", (user, code_id)
        )
        self._audit(user, "redeem", code=code_id, entry=entry_id)
        return entry_id

    # -- inbox -----------------------------------------------------------------

    def inbox(
        self, user: str, *, undelivered: bool = True, item_id: int | None = None
    ) -> list[InboxItem]:
        """The user's inbox items, oldest first (only ``item_id`` when given)."""
        sql = (
            "SELECT id, user, code_id, sender, name, size, type, rights, expires, created"
            " FROM inbox WHERE user = ?"
        )
        params: tuple[Any, ...] = (user,)
        if undelivered:
            sql += " AND delivered = 0"
        if item_id is not None:
            sql += " AND id = ?"
            params += (item_id,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", params).fetchall()
        return [InboxItem(*r) for r in rows]

    def mark_delivered(self, user: str, ids: list[int]) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE inbox SET delivered = 1 WHERE id = ? AND user = ?",
                [(i, user) for i in ids],
            )
