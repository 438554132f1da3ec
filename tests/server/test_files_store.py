import hashlib
import os
import sqlite3
import time

import pytest

from simulacra.codecs.files.blobstore import STALE_AFTER_S
from simulacra.errors import (
    CodeError,
    CodeExpired,
    CodeRevoked,
    ConfigError,
    Forbidden,
    NotFound,
    PayloadTooBig,
    ProtocolError,
    RateLimited,
)
from simulacra.server.files import (
    CODE_CHARS,
    FailureLimiter,
    FilesStore,
    code_sha256,
    new_code,
    normalize_code,
    parse_ttl,
)
from simulacra.server.store import Store

TEXT = b"hello, regenerated world\n" * 2000


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def files(tmp_path, clock):
    with Store(tmp_path) as users:
        for name in ("alice", "bob", "carol"):
            users.add_user(name)
    store = FilesStore(
        tmp_path,
        block_size=4096,
        try_emulator=False,
        clock=clock,
        limiter=FailureLimiter(limit=20, window=60.0, clock=clock),
    )
    yield store
    store.close()


@pytest.fixture
def entry(files):
    return files.put_bytes("alice", "notes.txt", TEXT)


def test_code_shape():
    code = new_code()
    assert len(code) == CODE_CHARS == 26 and code.isalnum() and code.upper() == code
    assert normalize_code(" " + code.lower()[:13] + "-" + code.lower()[13:]) == code
    assert code_sha256(code) == hashlib.sha256(code.encode()).hexdigest()
    assert len({new_code() for _ in range(1000)}) == 1000
    for bad in ("", "A" * 25, "A" * 27, "0" * 26, "a1" * 13):
        with pytest.raises(CodeError):
            normalize_code(bad)


@pytest.mark.parametrize(
    ("text", "seconds"), [("7d", 604800), ("12h", 43200), ("30m", 1800), ("90s", 90), ("45", 45)]
)
def test_parse_ttl(text, seconds):
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "7w", "-1d", "0s", "400d", "1.5h", True, 0])
def test_parse_ttl_refuses(text):
    with pytest.raises(ConfigError):
        parse_ttl(text)


def test_put_gives_the_owner_an_entry(files, entry):
    assert entry.name == "notes.txt" and entry.size == len(TEXT) and entry.type == "text/plain"
    assert entry.rights == "owner" and entry.sender == "alice"
    assert entry.sha256 == hashlib.sha256(TEXT).hexdigest()
    assert files.entries("alice") == [entry]
    assert files.entries("bob") == []
    assert b"".join(files.read("alice", entry.id)) == TEXT
    assert b"".join(files.read("alice", entry.id, 10, 9000)) == TEXT[10:9000]


def test_code_is_stored_only_as_its_hash(files, entry, tmp_path):
    share = files.share("alice", entry.id, to="bob")
    db = sqlite3.connect(tmp_path / "simulacra.db")
    dump = "\n".join(db.iterdump())
    db.close()
    assert share.code not in dump
    assert code_sha256(share.code) in dump


def test_share_and_redeem_view(files, entry):
    share = files.share("alice", entry.id, to="bob", rights="view", ttl="1h", uses=1)
    assert [i.code_id for i in files.inbox("bob")] == [share.code_id]
    got = files.redeem("bob", share.code)
    assert (got.name, got.size, got.type, got.rights, got.sender) == (
        "notes.txt",
        len(TEXT),
        "text/plain",
        "view",
        "alice",
    )
    assert "sha256" not in got.as_dict()  # a viewer never learns even the digest
    assert files.entries("bob") == [got]
    assert files.inbox("bob") == []  # redeemed: delivered
    with pytest.raises(Forbidden, match="view-only"):
        files.read("bob", got.id)
    # Redeeming again returns the same entry and costs no use.
    assert files.redeem("bob", share.code) == got


def test_download_rights_read_exact_bytes(files, entry):
    share = files.share("alice", entry.id, anyone=True, rights="download", uses=2)
    got = files.redeem("carol", share.code)
    assert b"".join(files.read("carol", got.id)) == TEXT


def test_forged_code_is_refused(files, entry):
    with pytest.raises(CodeError, match="unknown"):
        files.redeem("bob", new_code())
    with pytest.raises(CodeError, match="not a regeneration code"):
        files.redeem("bob", "not-a-code")


def test_someone_elses_code_is_refused(files, entry):
    share = files.share("alice", entry.id, to="bob")
    with pytest.raises(CodeError, match="another user") as info:
        files.redeem("carol", share.code)
    assert type(info.value) is CodeError
    assert files.entries("carol") == []
    files.redeem("bob", share.code)  # the right recipient still can


def test_expired_code_is_refused(files, entry, clock):
    share = files.share("alice", entry.id, to="bob", ttl="30m")
    clock.now += 1800
    with pytest.raises(CodeExpired, match="expired"):
        files.redeem("bob", share.code)


def test_used_up_code_is_refused(files, entry):
    share = files.share("alice", entry.id, anyone=True, uses=1)
    files.redeem("bob", share.code)
    with pytest.raises(CodeExpired, match="no uses left"):
        files.redeem("carol", share.code)


def test_revoked_code_is_refused_and_cuts_access(files, entry):
    share = files.share("alice", entry.id, anyone=True, uses=5, rights="download")
    got = files.redeem("bob", share.code)
    with pytest.raises(NotFound):
        files.revoke("bob", share.code)  # only its owner may revoke
    assert files.revoke("alice", share.code) == share.code_id
    with pytest.raises(CodeRevoked):
        files.redeem("carol", share.code)
    with pytest.raises(CodeRevoked):
        files.read("bob", got.id)
    assert files.entries("bob") == []


def test_revoke_by_listed_id(files, entry):
    share = files.share("alice", entry.id, to="bob")
    assert [c["id"] for c in files.codes("alice")] == [share.code_id]
    files.revoke("alice", f"#{share.code_id}")
    assert files.codes("alice")[0]["revoked"] == 1


def test_share_checks(files, entry):
    with pytest.raises(NotFound, match="no user"):
        files.share("alice", entry.id, to="nobody")
    with pytest.raises(ConfigError, match="exactly one"):
        files.share("alice", entry.id)
    with pytest.raises(ConfigError, match="exactly one"):
        files.share("alice", entry.id, to="bob", anyone=True)
    with pytest.raises(ConfigError, match="rights"):
        files.share("alice", entry.id, to="bob", rights="owner")
    with pytest.raises(ConfigError, match="uses"):
        files.share("alice", entry.id, to="bob", uses=0)
    with pytest.raises(NotFound):
        files.share("bob", entry.id, to="carol")  # not bob's entry
    got = files.redeem("bob", files.share("alice", entry.id, to="bob", rights="download").code)
    with pytest.raises(Forbidden, match="only the owner"):
        files.share("bob", got.id, to="carol")


def test_ten_thousand_random_codes_are_all_refused(files, entry):
    files.share("alice", entry.id, anyone=True, uses=100)
    files.limiter.limit = 1_000_000
    accepted = 0
    for _ in range(10_000):
        try:
            files.redeem("bob", new_code())
            accepted += 1
        except CodeError:
            pass
    assert accepted == 0
    assert files.entries("bob") == []


def test_failures_are_rate_limited(files, entry, clock):
    share = files.share("alice", entry.id, to="bob")
    for _ in range(20):
        with pytest.raises(CodeError):
            files.redeem("bob", new_code())
    with pytest.raises(RateLimited, match="try again in 60 s"):
        files.redeem("bob", share.code)  # even a good code waits
    files.redeem("carol", files.share("alice", entry.id, to="carol").code)  # others unaffected
    clock.now += 60
    assert files.redeem("bob", share.code).name == "notes.txt"


def test_inbox_redeem_by_item(files, entry):
    share = files.share("alice", entry.id, to="bob", rights="download")
    (item,) = files.inbox("bob")
    assert item.as_dict()["from"] == "alice" and "code" not in item.as_dict()
    with pytest.raises(CodeError):
        files.redeem("carol", inbox=item.id)
    got = files.redeem("bob", inbox=item.id)
    assert got.rights == "download" and share.code_id == item.code_id
    files.mark_delivered("bob", [item.id])
    assert files.inbox("bob") == [] and len(files.inbox("bob", undelivered=False)) == 1


def test_upload_size_limit(tmp_path):
    store = FilesStore(tmp_path, max_upload=1000)
    with pytest.raises(PayloadTooBig, match="upload limit is 1000 bytes"):
        store.begin_upload("alice", "big.bin", 1001, "", "0" * 64)
    upload = store.begin_upload("alice", "ok.bin", 10, "", hashlib.sha256(b"x" * 10).hexdigest())
    with pytest.raises(PayloadTooBig, match="more than the 10 bytes"):
        upload.write(0, b"x" * 11)
    upload.abort()
    assert list((tmp_path / "uploads").iterdir()) == []
    store.close()


def test_abandoned_or_bad_uploads_leave_nothing(files, tmp_path):
    data = os.urandom(10_000)
    sha = hashlib.sha256(data).hexdigest()
    abandoned = files.begin_upload("alice", "a.bin", len(data), "", sha)
    abandoned.write(0, data[:5000])
    with pytest.raises(ProtocolError, match="offset"):
        abandoned.write(4000, data[4000:])
    abandoned.abort()
    wrong = files.begin_upload("alice", "b.bin", len(data), "", "1" * 64)
    wrong.write(0, data)
    with pytest.raises(ProtocolError, match="sha256"):
        wrong.commit()
    short = files.begin_upload("alice", "c.bin", len(data), "", sha)
    short.write(0, data[:10])
    with pytest.raises(ProtocolError, match="10 of 10000"):
        short.commit()
    assert list((tmp_path / "uploads").iterdir()) == []
    assert list((tmp_path / "blobs").iterdir()) == []
    assert files.entries("alice") == []


def test_bad_upload_announcements(files):
    with pytest.raises(ProtocolError, match="name"):
        files.begin_upload("alice", "../x", 1, "", "0" * 64)
    with pytest.raises(ProtocolError, match="sha256"):
        files.begin_upload("alice", "x", 1, "", "XYZ")
    with pytest.raises(ProtocolError, match="size"):
        files.begin_upload("alice", "x", -1, "", "0" * 64)


def test_restart_keeps_files_entries_codes_and_inbox(tmp_path, clock):
    with Store(tmp_path) as users:
        users.add_user("alice")
        users.add_user("bob")
    first = FilesStore(tmp_path, try_emulator=False, clock=clock)
    entry = first.put_bytes("alice", "keep.txt", TEXT)
    share = first.share("alice", entry.id, to="bob", rights="download")
    first.close()
    again = FilesStore(tmp_path, try_emulator=False, clock=clock)
    assert again.entries("alice") == [entry]
    assert [i.code_id for i in again.inbox("bob")] == [share.code_id]
    got = again.redeem("bob", share.code)
    assert b"".join(again.read("bob", got.id)) == TEXT
    again.close()


def test_dictionary_is_trained_once_enough_files_exist(files):
    for i in range(16):
        body = (f"def handler_{i}(request):\n    return request.get('k{i % 3}')\n" * 60).encode()
        files.put_bytes("alice", f"m{i}.py", body)
    (version,) = files.dictionaries.versions()
    late = files.put_bytes("alice", "late.py", b"def handler_99(request):\n    return 1\n" * 80)
    assert late.locator.endswith(version[:12])
    assert b"".join(files.read("alice", late.id)).startswith(b"def handler_99")
    actions = [a for _, _, a, _ in files.audit_log(200)]
    assert "train_dictionary" in actions and "put" in actions


def test_audit_records_refusals(files, entry):
    with pytest.raises(CodeError):
        files.redeem("bob", new_code())
    ts, user, action, detail = files.audit_log(1)[0]
    assert (user, action, detail) == ("bob", "redeem_refused", {"reason": "CodeError"})


def test_empty_file_round_trips(files):
    empty = files.put_bytes("alice", "empty.txt", b"")
    assert empty.size == 0
    assert b"".join(files.read("alice", empty.id)) == b""


def test_a_second_node_starting_keeps_uploads_in_progress_but_not_crash_leftovers(files, tmp_path):
    data = b"half of an upload"
    live = files.begin_upload("alice", "live.bin", 2 * len(data), "", "0" * 64)
    live.write(0, data)
    crashed = tmp_path / "uploads" / "0123456789abcdef01234567.part"
    crashed.write_bytes(b"left by a crash")
    long_ago = time.time() - STALE_AFTER_S - 60
    os.utime(crashed, (long_ago, long_ago))
    FilesStore(tmp_path, try_emulator=False).close()  # node B starts on the same data dir
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == [live.path.name]
    assert live.write(len(data), data) == 2 * len(data)
    live.abort()


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_blob_whose_row_insert_failed_is_swept_once_old(files, entry, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(files, "_insert_entry", fail)
    orphan = b"stored, then the insert failed\n" * 50
    with pytest.raises(sqlite3.OperationalError):
        files.put_bytes("alice", "lost.txt", orphan)
    monkeypatch.undo()
    orphan_dir = files.blobs.path(hashlib.sha256(orphan).hexdigest())
    kept_dir = files.blobs.path(hashlib.sha256(TEXT).hexdigest())  # the entry's blob
    assert orphan_dir.is_dir() and kept_dir.is_dir()
    assert files.remove_orphan_blobs() == 0  # fresh: another node may be about to insert
    _age(orphan_dir, STALE_AFTER_S + 60)
    _age(kept_dir, STALE_AFTER_S + 60)
    FilesStore(tmp_path, try_emulator=False).close()  # the next start sweeps it
    assert not orphan_dir.exists() and kept_dir.is_dir()
    assert b"".join(files.read("alice", entry.id)) == TEXT


def test_a_put_that_finds_its_blob_stored_makes_it_fresh(files, tmp_path):
    data = b"same content twice\n" * 40
    sha = hashlib.sha256(data).hexdigest()
    with open(tmp_path / "x", "wb") as fh:
        fh.write(data)
    with open(tmp_path / "x", "rb") as fh:
        files.blobs.put(fh, sha, len(data))
    _age(files.blobs.path(sha), STALE_AFTER_S + 60)  # an old orphan...
    with open(tmp_path / "x", "rb") as fh:
        files.blobs.put(fh, sha, len(data))  # ...that a new upload of the same bytes reuses
    assert files.remove_orphan_blobs() == 0  # no longer old: the sweep leaves it


def test_failed_codes_count_across_nodes_and_restarts(tmp_path, clock):
    # No limiter given: failures are counted from the shared database's audit rows.
    with Store(tmp_path) as users:
        for name in ("alice", "bob"):
            users.add_user(name)
    node_a = FilesStore(tmp_path, try_emulator=False, clock=clock)
    node_b = FilesStore(tmp_path, try_emulator=False, clock=clock)  # same data directory
    try:
        good = node_a.share("alice", node_a.put_bytes("alice", "n.txt", TEXT).id, to="bob").code
        for node in [node_a, node_b] * 10:  # 20 guesses spread over both nodes
            with pytest.raises(CodeError):
                node.redeem("bob", new_code())
        for node in (node_a, node_b):
            with pytest.raises(RateLimited, match="try again in 60 s"):
                node.redeem("bob", good)
    finally:
        node_a.close()
        node_b.close()
    restarted = FilesStore(tmp_path, try_emulator=False, clock=clock)
    try:
        clock.now += 30
        with pytest.raises(RateLimited, match="try again in 30 s"):  # a restart forgets none
            restarted.redeem("bob", good)
        clock.now += 30
        assert restarted.redeem("bob", good).name == "n.txt"  # the window passed
    finally:
        restarted.close()
