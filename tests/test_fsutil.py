"""fsutil: a file is replaced whole or not at all, and failures leave nothing behind."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from simulacra.fsutil import atomic_path, human_size, write_atomic


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    write_atomic(target, b"new bytes")
    assert target.read_bytes() == b"new bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_write_atomic_creates_private_files_private(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    write_atomic(target, b"t\n", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_temporary_names_are_hidden_and_distinct(tmp_path: Path) -> None:
    target = tmp_path / "a.zdict"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        for tmp in (first, second):
            assert tmp.parent == tmp_path
            assert tmp.name.startswith(".a.zdict.") and tmp.name.endswith(".tmp")
            tmp.write_bytes(tmp.name.encode())
    assert target.read_bytes() == first.name.encode()  # the outer block finished last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zdict"]


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (5 << 20, "5.0 MiB")],
)
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text
    assert human_size(3 << 40) == "3072.0 GiB"
