"""The viewer (zstd) dictionary: trained on the server's files, versioned by sha256.

::

    samples (block-sized pieces of stored files) ─► zstandard.train_dictionary
        ─► bytes ─► sha256 ─► dictionaries/<sha>.zdict   (kept forever: old blocks name it)
                             dictionaries/current       (the sha new blocks use)

A block names the dictionary it was compressed with (the first 8 bytes of its
sha256), so training a new one never breaks an old block. Loading checks the
file against its full sha256, the file's name.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import zstandard

from simulacra.errors import CorruptArtifact, PayloadTooBig
from simulacra.fsutil import write_atomic

__all__ = [
    "ViewerDictionary",
    "DictionaryStore",
    "train_viewer_dictionary",
    "DICTIONARY_BYTES",
    "MIN_SAMPLES",
    "MAX_DICTIONARY_BYTES",
]

log = logging.getLogger("simulacra.files")

DICTIONARY_BYTES = 32 * 1024
MAX_DICTIONARY_BYTES = 1 << 20
MIN_SAMPLES = 8
_MAX_SAMPLES = 2048
_SUFFIX = ".zdict"
_CURRENT = "current"


@dataclass(frozen=True, slots=True)
class ViewerDictionary:
    """One trained dictionary version."""

    sha256: bytes
    data: bytes

    @property
    def hex(self) -> str:
        return self.sha256.hex()

    def zstd(self) -> zstandard.ZstdCompressionDict:
        return zstandard.ZstdCompressionDict(self.data)


def train_viewer_dictionary(
    samples: list[bytes], size: int = DICTIONARY_BYTES
) -> ViewerDictionary | None:
    """Train on ``samples``; None when there are too few or zstd cannot learn from them."""
    samples = [s for s in samples if s][:_MAX_SAMPLES]
    if len(samples) < MIN_SAMPLES:
        return None
    try:
        trained = zstandard.train_dictionary(size, list[bytes | bytearray | memoryview](samples))
    except zstandard.ZstdError:
        return None
    data = trained.as_bytes()
    return ViewerDictionary(hashlib.sha256(data).digest(), data)


class DictionaryStore:
    """Every dictionary version of one data directory; thread-safe, cached."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._cache: dict[bytes, zstandard.ZstdCompressionDict] = {}
        self._lock = threading.Lock()

    def _path(self, sha: bytes) -> Path:
        return self.root / (sha.hex() + _SUFFIX)

    def add(self, dictionary: ViewerDictionary, *, make_current: bool = True) -> None:
        path = self._path(dictionary.sha256)
        if not path.exists():
            write_atomic(path, dictionary.data)
        if make_current:
            write_atomic(self.root / _CURRENT, (dictionary.hex + "\n").encode("ascii"))

    def current(self) -> ViewerDictionary | None:
        """The dictionary new blocks should use, if one was trained."""
        try:
            text = (self.root / _CURRENT).read_text(encoding="ascii").strip()
            sha = bytes.fromhex(text)
            return ViewerDictionary(sha, self._read(sha))
        except (OSError, ValueError):
            return None
        except (CorruptArtifact, PayloadTooBig) as exc:
            # New blocks go without a dictionary rather than every upload failing; old
            # blocks that name this one still refuse to decode (CorruptArtifact).
            log.warning("current viewer dictionary unusable (%s); new blocks use none", exc)
            return None

    def versions(self) -> list[str]:
        return sorted(p.name[: -len(_SUFFIX)] for p in self.root.glob("*" + _SUFFIX))

    def _read(self, sha: bytes) -> bytes:
        path = self._path(sha)
        try:
            if path.stat().st_size > MAX_DICTIONARY_BYTES:
                raise PayloadTooBig(f"dictionary {sha.hex()[:12]} is over {MAX_DICTIONARY_BYTES}")
            data = path.read_bytes()
        except FileNotFoundError:
            raise CorruptArtifact(f"dictionary {sha.hex()[:12]} is missing") from None
        if hashlib.sha256(data).digest() != sha:
            raise CorruptArtifact(f"dictionary {sha.hex()[:12]} fails its sha256 check")
        return data

    def get(self, dict_id: bytes) -> zstandard.ZstdCompressionDict:
        """The dictionary whose sha256 is or starts with ``dict_id`` (a ``DictionaryLookup``)."""
        with self._lock:
            found = self._cache.get(dict_id)
        if found is not None:
            return found
        if len(dict_id) == 32:
            sha = dict_id
        else:
            matches = list(self.root.glob(dict_id.hex() + "*" + _SUFFIX))
            if len(matches) != 1:
                what = "is missing" if not matches else "is ambiguous"
                raise CorruptArtifact(f"dictionary {dict_id.hex()} {what}")
            sha = bytes.fromhex(matches[0].name[: -len(_SUFFIX)])
        zdict = zstandard.ZstdCompressionDict(self._read(sha))
        with self._lock:
            self._cache[dict_id] = zdict
        return zdict
