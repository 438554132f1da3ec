"""File helpers: writing so that a reader never sees half a file; sizes for people.

::

    atomic_path(path) ─► yields .<name>.<random>.tmp beside path ─► caller writes it
        success ─► os.replace(tmp, path)        (readers see the old file or the new one)
        error   ─► tmp removed, path untouched  (nothing half-written is left behind)

    write_atomic(path, data, mode=0o600) = atomic_path + one exclusive create + write

The temporary name is random, so two processes sharing one data directory
never write into each other's temporary file, and it starts with a dot and
ends in ``.tmp``, so globs over the real files (``*.zdict``, ``seg-*``) skip it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "write_atomic", "human_size"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it when the block succeeds."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o666) -> None:
    """Replace ``path`` with ``data`` in one step; ``mode`` (less the umask) from creation on."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)


def human_size(n: int) -> str:
    """``512`` -> ``512 B``, ``1536`` -> ``1.5 KiB``, up to GiB."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"
