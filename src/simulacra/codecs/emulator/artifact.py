"""The ``.emu`` container: magic, format version, named sections, CRC32.

::

    +----------------+---------+-----------+----------------------------+-----------+-------+
    | b"SIMEMU\\0\\1" | version | n_sections| n x (name_len u8, name,    | payloads  | crc32 |
    |    8 bytes     | u16 LE  | u16 LE    |      length u32 LE)        | in order  | u32 LE|
    +----------------+---------+-----------+----------------------------+-----------+-------+
                                   crc32 covers every byte before it

Reading checks, in order: size limits, magic, version, checksum, then the
section table (names unique, lengths adding up exactly). Any failure raises
``CorruptArtifact`` with one clear line; sizes past the limits raise
``PayloadTooBig``. A reader never hands back a half-checked section.
"""

from __future__ import annotations

import struct
import zlib

from simulacra.errors import CorruptArtifact, PayloadTooBig

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "MAX_ARTIFACT_BYTES",
    "MAX_SECTIONS",
    "write_container",
    "read_container",
]

MAGIC = b"SIMEMU\x00\x01"
# 2: level tables (``mdd``) joined the heuristics.
FORMAT_VERSION = 2
# 2^26 inputs x 64 output bits packed is 512 MiB; nothing legitimate is larger.
MAX_ARTIFACT_BYTES = 600 << 20
MAX_SECTIONS = 32
_HEAD = struct.Struct("<8sHH")


def write_container(sections: list[tuple[str, bytes]], version: int = FORMAT_VERSION) -> bytes:
    """Sections (name, payload) -> artifact bytes."""
    if len(sections) > MAX_SECTIONS:
        raise PayloadTooBig(f"{len(sections)} sections, limit {MAX_SECTIONS}")
    parts = [_HEAD.pack(MAGIC, version, len(sections))]
    for name, payload in sections:
        raw = name.encode("ascii")
        if not 0 < len(raw) < 256:
            raise ValueError(f"bad section name {name!r}")
        parts.append(bytes([len(raw)]) + raw + struct.pack("<I", len(payload)))
    parts.extend(payload for _, payload in sections)
    body = b"".join(parts)
    if len(body) + 4 > MAX_ARTIFACT_BYTES:
        raise PayloadTooBig(f"artifact of {len(body) + 4} bytes is past the limit")
    return body + struct.pack("<I", zlib.crc32(body))


def read_container(data: bytes | bytearray | memoryview) -> dict[str, memoryview]:
    """Artifact bytes -> {name: payload}; raises CorruptArtifact on any defect."""
    data = memoryview(data)
    if len(data) > MAX_ARTIFACT_BYTES:
        raise PayloadTooBig(f"artifact of {len(data)} bytes is past the limit")
    if len(data) < _HEAD.size + 4:
        raise CorruptArtifact(f"not an emulator artifact: only {len(data)} bytes")
    magic, version, count = _HEAD.unpack_from(data, 0)
    if magic != MAGIC:
        raise CorruptArtifact("not an emulator artifact: bad magic")
    if version != FORMAT_VERSION:
        raise CorruptArtifact(
            f"emulator artifact format {version} is not supported "
            f"(this build reads {FORMAT_VERSION})"
        )
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise CorruptArtifact(
            "emulator artifact checksum mismatch: the file is corrupt or truncated"
        )
    if count > MAX_SECTIONS:
        raise CorruptArtifact(f"emulator artifact lists {count} sections, limit {MAX_SECTIONS}")
    pos = _HEAD.size
    table: list[tuple[str, int]] = []
    end = len(data) - 4
    for _ in range(count):
        if pos >= end:
            raise CorruptArtifact("emulator artifact section table truncated")
        nlen = data[pos]
        if nlen == 0 or pos + 1 + nlen + 4 > end:
            raise CorruptArtifact("emulator artifact section table truncated")
        try:
            name = bytes(data[pos + 1 : pos + 1 + nlen]).decode("ascii")
        except UnicodeDecodeError:
            raise CorruptArtifact("emulator artifact has a bad section name") from None
        (length,) = struct.unpack_from("<I", data, pos + 1 + nlen)
        table.append((name, length))
        pos += 1 + nlen + 4
    if len({n for n, _ in table}) != len(table):
        raise CorruptArtifact("emulator artifact repeats a section name")
    if pos + sum(length for _, length in table) != end:
        raise CorruptArtifact("emulator artifact section lengths do not add up")
    out: dict[str, memoryview] = {}
    for name, length in table:
        out[name] = data[pos : pos + length]
        pos += length
    return out
