"""Content-addressed blobs, stored as independently decodable blocks.

::

    file (sha256 S) ─► 64 KiB raw pieces ─► encode_block (zstd | zstd+dict | emulator)
        ─► blobs/S[:2]/S/00000000.blk ... + map.json (size, block size, codec per block)

    read(S, start, end) ─► only the blocks that overlap ─► decode_block (sha256 per block)
    read_all(S)         ─► every block ─► sha256 of the whole == S, or CorruptArtifact

A blob is written into a temporary directory and renamed into place, so a
reader never sees half a blob and a crash leaves only a ``.tmp-*`` directory
that the next start removes. Equal files share one blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from simulacra.codecs.files.blocks import (
    HEADER,
    MAX_BLOCK_BYTES,
    BlockCodec,
    decode_block,
    encode_block,
)
from simulacra.codecs.files.dictionary import DictionaryStore
from simulacra.errors import CodecError, CorruptArtifact, NotFound, PayloadTooBig

__all__ = [
    "BlockInfo",
    "BlobInfo",
    "BlobStore",
    "DEFAULT_BLOCK_SIZE",
    "STALE_AFTER_S",
    "remove_stale",
]

DEFAULT_BLOCK_SIZE = 64 * 1024
_MAP = "map.json"
_MAP_VERSION = 1
_MAX_MAP_BYTES = 64 * 1024 * 1024
# A temporary upload or blob untouched this long was left by a crash, not written by
# another node sharing the directory: writers touch theirs at least every block, and
# the files API drops an upload idle for a minute.
STALE_AFTER_S = 600.0
_BLOCK_SLACK = HEADER.size + 4 + 64 * 1024  # framing, crc, worst-case expansion


@dataclass(frozen=True, slots=True)
class BlockInfo:
    codec: BlockCodec
    raw_len: int
    stored_len: int
    dict_sha256: str | None


@dataclass(frozen=True, slots=True)
class BlobInfo:
    sha256: str
    size: int
    block_size: int
    blocks: tuple[BlockInfo, ...]

    @property
    def stored_bytes(self) -> int:
        return sum(b.stored_len for b in self.blocks)

    @property
    def dictionary(self) -> str | None:
        """The dictionary the blob's blocks use (the newest one named)."""
        named = [b.dict_sha256 for b in self.blocks if b.dict_sha256]
        return named[-1] if named else None

    def codec_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for b in self.blocks:
            counts[b.codec.name.lower()] = counts.get(b.codec.name.lower(), 0) + 1
        return counts


def remove_stale(paths: Iterable[Path], *, now: float, age: float = STALE_AFTER_S) -> int:
    """Remove the files or directories in ``paths`` untouched for ``age`` seconds.

    Left by a crash; only old ones go, because another node sharing the data
    directory may be writing a fresh one right now. Returns how many went.
    """
    removed = 0
    for path in paths:
        try:
            if now - path.stat().st_mtime < age:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
        except OSError:
            continue
    return removed


def _check_sha(sha: str) -> str:
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise NotFound(f"not a blob id: {sha[:80]!r}")
    return sha


class BlobStore:
    """``root/<sha[:2]>/<sha>/`` per blob; blocking calls (run them off the event loop)."""

    def __init__(
        self,
        root: Path,
        dictionaries: DictionaryStore,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        try_emulator: bool = True,
    ) -> None:
        if not 1 <= block_size <= MAX_BLOCK_BYTES:
            raise CodecError(f"block size must be 1..{MAX_BLOCK_BYTES}, got {block_size}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.dictionaries = dictionaries
        self.block_size = block_size
        self.try_emulator = try_emulator
        remove_stale(self.root.glob(".tmp-*"), now=time.time())

    def path(self, sha: str) -> Path:
        sha = _check_sha(sha)
        return self.root / sha[:2] / sha

    def exists(self, sha: str) -> bool:
        return (self.path(sha) / _MAP).is_file()

    # -- writing -------------------------------------------------------------

    def put(self, source: BinaryIO, sha: str, size: int) -> BlobInfo:
        """Store the ``size`` bytes of ``source`` as blob ``sha`` (checked while read)."""
        target = self.path(sha)
        if self.exists(sha):
            # Fresh again: an orphan sweep (files.py) keeps it while its new row is written.
            with contextlib.suppress(OSError):
                os.utime(target)
            return self.info(sha)
        current = self.dictionaries.current()
        zdict = current.zstd() if current is not None else None
        tmp = self.root / f".tmp-{secrets.token_hex(8)}"
        tmp.mkdir()
        try:
            hasher = hashlib.sha256()
            blocks: list[BlockInfo] = []
            done = 0
            while done < size:
                raw = source.read(min(self.block_size, size - done))
                if not raw:
                    raise CodecError(f"source ended at {done} of {size} bytes")
                hasher.update(raw)
                enc = encode_block(
                    raw,
                    dictionary=zdict,
                    dict_sha256=current.sha256 if current is not None else None,
                    try_emulator=self.try_emulator,
                )
                (tmp / f"{len(blocks):08d}.blk").write_bytes(enc.data)
                blocks.append(
                    BlockInfo(
                        enc.codec,
                        enc.raw_len,
                        len(enc.data),
                        enc.dict_sha256.hex() if enc.dict_sha256 else None,
                    )
                )
                done += len(raw)
            if hasher.hexdigest() != sha:
                raise CorruptArtifact("stored bytes do not match the file's sha256")
            info = BlobInfo(sha, size, self.block_size, tuple(blocks))
            (tmp / _MAP).write_text(json.dumps(_map_obj(info)), encoding="utf-8")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, target)
            except OSError:
                if not self.exists(sha):  # someone else stored the same blob meanwhile
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
            return info
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def delete(self, sha: str) -> None:
        shutil.rmtree(self.path(sha), ignore_errors=True)

    # -- reading -------------------------------------------------------------

    def info(self, sha: str) -> BlobInfo:
        path = self.path(sha) / _MAP
        try:
            if path.stat().st_size > _MAX_MAP_BYTES:
                raise PayloadTooBig(f"block map of {sha[:12]} is over {_MAX_MAP_BYTES} bytes")
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound(f"no blob {sha[:12]}") from None
        except (OSError, ValueError) as exc:
            raise CorruptArtifact(f"block map of {sha[:12]} is unreadable: {exc}") from exc
        return _info_from(obj, sha)

    def _block(self, sha: str, info: BlobInfo, index: int) -> bytes:
        path = self.path(sha) / f"{index:08d}.blk"
        expected = info.blocks[index]
        try:
            with open(path, "rb") as fh:
                data = fh.read(expected.raw_len + _BLOCK_SLACK + 1)
        except FileNotFoundError:
            raise CorruptArtifact(f"blob {sha[:12]} is missing block {index}") from None
        if len(data) != expected.stored_len:
            raise CorruptArtifact(f"blob {sha[:12]} block {index} has the wrong length")
        raw = decode_block(data, dictionaries=self.dictionaries.get, max_raw=info.block_size)
        if len(raw) != expected.raw_len:
            raise CorruptArtifact(f"blob {sha[:12]} block {index} has the wrong size")
        return raw

    def iter_range(self, sha: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes ``start..end`` of the blob, one decoded (and checked) block at a time."""
        info = self.info(sha)
        end = info.size if end is None else end
        if not 0 <= start <= end <= info.size:
            raise NotFound(f"range {start}-{end} is outside 0-{info.size}")
        bs = info.block_size
        index = start // bs
        while index * bs < end:
            raw = self._block(sha, info, index)
            lo = max(start - index * bs, 0)
            hi = min(end - index * bs, len(raw))
            yield raw[lo:hi]
            index += 1

    def read(self, sha: str, start: int = 0, end: int | None = None) -> bytes:
        return b"".join(self.iter_range(sha, start, end))

    def read_all(self, sha: str) -> bytes:
        """The whole blob, checked against its sha256."""
        data = self.read(sha)
        if hashlib.sha256(data).hexdigest() != sha:
            raise CorruptArtifact(f"blob {sha[:12]} fails its sha256 check")
        return data

    def iter_verified(self, sha: str) -> Iterator[bytes]:
        """Every block in order; the last step checks the whole file's sha256."""
        hasher = hashlib.sha256()
        for piece in self.iter_range(sha):
            hasher.update(piece)
            yield piece
        if hasher.hexdigest() != sha:
            raise CorruptArtifact(f"blob {sha[:12]} fails its sha256 check")


def _map_obj(info: BlobInfo) -> dict[str, object]:
    return {
        "version": _MAP_VERSION,
        "sha256": info.sha256,
        "size": info.size,
        "block_size": info.block_size,
        "blocks": [[int(b.codec), b.raw_len, b.stored_len, b.dict_sha256] for b in info.blocks],
    }


def _info_from(obj: object, sha: str) -> BlobInfo:
    try:
        if not isinstance(obj, dict) or obj["version"] != _MAP_VERSION or obj["sha256"] != sha:
            raise ValueError("wrong version or sha256")
        blocks = tuple(
            BlockInfo(BlockCodec(int(c)), int(r), int(s), d if d is None else str(d))
            for c, r, s, d in obj["blocks"]
        )
        info = BlobInfo(sha, int(obj["size"]), int(obj["block_size"]), blocks)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptArtifact(f"block map of {sha[:12]} is malformed") from exc
    # Block i must hold bytes i*bs .. (i+1)*bs exactly, or range reads would shift.
    bs = info.block_size
    if not 1 <= bs <= MAX_BLOCK_BYTES or len(blocks) != -(-info.size // bs):
        raise CorruptArtifact(f"block map of {sha[:12]} does not add up")
    if any(b.raw_len != min(bs, info.size - i * bs) for i, b in enumerate(blocks)):
        raise CorruptArtifact(f"block map of {sha[:12]} does not add up")
    return info
