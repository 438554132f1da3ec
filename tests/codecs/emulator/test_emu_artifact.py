import struct
import zlib

import pytest

from simulacra.codecs.emulator.artifact import MAGIC, read_container, write_container
from simulacra.errors import CorruptArtifact


def test_container_exact_bytes():
    data = write_container([("ab", b"xyz")])
    body = MAGIC + b"\x02\x00\x01\x00" + b"\x02ab\x03\x00\x00\x00" + b"xyz"
    assert data == body + struct.pack("<I", zlib.crc32(body))
    assert {k: bytes(v) for k, v in read_container(data).items()} == {"ab": b"xyz"}


def _reseal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:10], "only 10 bytes"),
        (lambda d: b"X" + d[1:], "bad magic"),
        (lambda d: _reseal(d[:8] + b"\x01\x00" + d[10:-4]), "format 1 is not supported"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "checksum"),
        (lambda d: d[:-5] + d[-4:], "checksum"),
        (lambda d: _reseal(d[:-5]), "do not add up"),
    ],
)
def test_container_defects(mutate, message):
    data = write_container([("ab", b"xyz"), ("cd", b"")])
    with pytest.raises(CorruptArtifact, match=message):
        read_container(mutate(data))


def test_container_repeated_name():
    with pytest.raises(CorruptArtifact, match="repeats"):
        read_container(write_container([("a", b"1"), ("a", b"2")]))
