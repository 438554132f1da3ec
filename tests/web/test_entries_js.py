"""web/entries.js: the viewer dictionary in IndexedDB keeps metadata, never bytes."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser

ENTRY = {
    "id": "ff020a6dded58880",
    "name": "notes.txt",
    "size": 120,
    "type": "text/plain",
    "rights": "view",
    "locator": "f1.b65536.dnone",
    "from": "alice",
    "created": 1796416618.25,
    "sha256": "f2" * 32,
    "bytes": "SGVsbG8=",
    "data": [1, 2, 3],
}
KEPT = {k: ENTRY[k] for k in ("id", "name", "size", "type", "rights", "locator", "from", "created")}


def test_record_keeps_metadata_only(js: Any) -> None:
    assert js("entries.js", "return m.entryRecord('bob', arg);", ENTRY) == {**KEPT, "user": "bob"}


def test_store_round_trip_per_user(js: Any) -> None:
    body = """
      const db = await m.ViewerDictionary.open("simulacra-test-" + Math.random());
      const second = { ...arg, id: "2", name: "b.txt", created: arg.created + 1 };
      await db.replace("bob", [arg, second]);
      await db.put("carol", { ...arg, id: "3" });
      const bob = await db.entries("bob");
      await db.replace("bob", [second]);
      const after = await db.entries("bob");
      await db.putInbox("bob", { inbox: 4, from: "alice", name: "c", size: 1, rights: "view", code: "SECRET" });
      const inbox = await db.inbox("bob");
      await db.removeInbox("bob", 4);
      const emptied = await db.inbox("bob");
      const carol = await db.entries("carol");
      db.close();
      return [bob, after, inbox, emptied, carol.map((e) => e.id)];
    """
    bob, after, inbox, emptied, carol = js("entries.js", body, ENTRY)
    assert bob == [
        {**KEPT, "user": "bob"},
        {**KEPT, "id": "2", "name": "b.txt", "created": ENTRY["created"] + 1, "user": "bob"},
    ]
    assert [e["id"] for e in after] == ["2"]
    # an inbox item never keeps a code, even if one were handed to it
    assert inbox == [
        {"inbox": 4, "from": "alice", "name": "c", "size": 1, "rights": "view", "user": "bob"}
    ]
    assert emptied == []
    assert carol == ["3"]


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (123456, "123 kB"),
        (5_500_000, "5.5 MB"),
        (-1, "?"),
    ],
)
def test_format_bytes(js: Any, n: int, text: str) -> None:
    assert js("files.js", "return m.formatBytes(arg);", n) == text
