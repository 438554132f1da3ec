"""Shared by the apps tests: a stand-in emulator codec that builds instantly."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulacra.errors import CorruptArtifact


class FakeEmulator:
    """A lookup table with the emulator API: exact, and instant to build."""

    MAGIC = b"FAKEEMU1"

    def __init__(self, table: np.ndarray, in_bits: int, out_bits: int) -> None:
        self.table, self.in_bits, self.out_bits = table, in_bits, out_bits

    def query(self, xs: np.ndarray) -> np.ndarray:
        return self.table[np.asarray(xs, dtype=np.uint64).astype(np.intp)].copy()

    def patch(self, overrides: dict[int, int]) -> FakeEmulator:
        table = self.table.copy()
        for x, y in overrides.items():
            table[x] = y
        return FakeEmulator(table, self.in_bits, self.out_bits)

    def save(self, path: Path) -> None:
        body = bytes([self.in_bits, self.out_bits]) + self.table.astype("<u8").tobytes()
        Path(path).write_bytes(self.MAGIC + zlib.crc32(body).to_bytes(4, "big") + body)

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes)

    def report(self) -> dict[str, Any]:
        return {
            "in_bits": self.in_bits,
            "verified": {"kind": "exhaustive", "inputs": self.table.size},
        }


class FakeCodec:
    CODEC_VERSION = 1

    def __init__(self) -> None:
        self.compiles: list[str] = []

    def compile_emulator(self, fn, in_bits, out_bits, *, vectorized=False, seed=0, progress=None):  # type: ignore[no-untyped-def]
        self.compiles.append(fn.__name__)
        if progress is not None:
            progress("table", 1, 1)
        table = np.asarray(fn(np.arange(1 << in_bits, dtype=np.uint64)), dtype=np.uint64)
        return FakeEmulator(table, in_bits, out_bits)

    def load_emulator(self, path: Path) -> FakeEmulator:
        data = Path(path).read_bytes()
        magic, crc, body = data[:8], data[8:12], data[12:]
        if magic != FakeEmulator.MAGIC or int.from_bytes(crc, "big") != zlib.crc32(body):
            raise CorruptArtifact(f"{path}: bad magic or checksum")
        table = np.frombuffer(body[2:], dtype="<u8").astype(np.uint64)
        return FakeEmulator(table, body[0], body[1])


@pytest.fixture
def fake_codec() -> FakeCodec:
    return FakeCodec()
