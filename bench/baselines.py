"""Classical exact encodings of a truth table: the columns of BASELINES.md.

Runnable alone (``python bench/baselines.py [--only NAME ...] [--json F]``): prints
ours next to the documented figures. ``bench/emulator_suite.py`` imports
:func:`baseline_bytes` so every column is measured in the same run as the emulator::

    truth table ─┬─► packed            ceil(2^n · m / 8)
                 ├─► two-stage         index of shared blocks + the blocks
                 ├─► BDD               nodes × (2⌈log2 nodes⌉ + ⌈log2 n⌉) / 8, rounded up
                 ├─► zstd -19 blocks   sum of frames over 4 KiB blocks of the byte table
                 ├─► zstd -19 whole    one frame
                 └─► xz -9e whole      lzma preset 9 | PRESET_EXTREME

Byte accounting (reproduces BASELINES.md exactly on every row but random16,
whose table depends on the random generator):

- byte table: each output stored little-endian in ``ceil(m/8)`` bytes (3 rounds up
  to 4); this is what zstd and xz compress.
- two-stage: block size ``B`` tried over 4 .. 4096 entries (powers of two); blocks
  are byte-table rows of ``B`` entries, deduplicated; the index holds one block
  number per block of the table, ``ceil(bits(U - 1) / 8)`` bytes each (at least 1),
  ``U`` the number of distinct blocks. Bytes = index + ``U · B · entry bytes``.
"""

from __future__ import annotations

import argparse
import json
import lzma
import sys
import time
from pathlib import Path

import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from simulacra.codecs.emulator.bdd import BDD  # noqa: E402
from simulacra.codecs.emulator.examples import SUITE, truth_table  # noqa: E402

__all__ = [
    "COLUMNS",
    "RANDOM_ACCESS",
    "EXTRA_COLUMNS",
    "DOCUMENTED",
    "byte_table",
    "packed_bytes",
    "two_stage_bytes",
    "bdd_bytes",
    "zstd_blocks_bytes",
    "zstd_whole_bytes",
    "xz_whole_bytes",
    "baseline_bytes",
]

COLUMNS = ("packed", "two_stage", "bdd", "zstd_4k", "zstd_whole", "xz_whole")
RANDOM_ACCESS = ("packed", "two_stage", "bdd", "zstd_4k")
# Not a BASELINES.md column: the same BDD as bdd.py serializes it (level-relative
# pointer widths), shown for reference and kept out of the "best" comparisons.
EXTRA_COLUMNS = ("bdd_serialized",)
_TITLES = {
    "packed": "packed table",
    "two_stage": "two-stage table",
    "bdd": "BDD",
    "zstd_4k": "zstd -19, 4 KiB blocks",
    "zstd_whole": "zstd -19 whole",
    "xz_whole": "xz -9e whole",
    "bdd_serialized": "BDD as bdd.py stores it",
}

# shared/docs/BASELINES.md, in COLUMNS order.
DOCUMENTED: dict[str, tuple[int, ...]] = {
    "row2048": (131_072, 118_048, 8_008, 97_719, 87_473, 52_836),
    "popcount16": (40_960, 1_728, 583, 2_292, 280, 404),
    "crc16": (131_072, 131_088, 279, 131_392, 131_084, 131_140),
    "mul8x8": (131_072, 131_088, 44_132, 125_450, 106_682, 96_332),
    "random16": (131_072, 131_088, 508_246, 131_392, 131_084, 131_140),
    "sin16": (98_304, 112_280, 34_852, 11_008, 13_648, 6_188),
    "aes_sbox": (256, 257, 1_077, 266, 266, 316),
    "ltl5x5": (4_194_304, 52_224, 630, 661_035, 11_059, 5_644),
}

BLOCK_BYTES = 4096
TWO_STAGE_BLOCKS = tuple(1 << k for k in range(2, 13))


def entry_bytes(out_bits: int) -> int:
    b = -(-out_bits // 8)
    return 1 << (b - 1).bit_length()


def byte_table(table: np.ndarray, out_bits: int) -> bytes:
    """The table with each entry in ``entry_bytes(out_bits)`` little-endian bytes."""
    dtype = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}[entry_bytes(out_bits)]
    return np.asarray(table).astype(dtype).tobytes()


def packed_bytes(in_bits: int, out_bits: int) -> int:
    return -(-(1 << in_bits) * out_bits // 8)


def two_stage_bytes(table: np.ndarray, out_bits: int) -> tuple[int, int]:
    """Smallest two-stage size and the block size (entries) that gives it."""
    eb = entry_bytes(out_bits)
    raw = np.frombuffer(byte_table(table, out_bits), dtype=np.uint8)
    best: tuple[int, int] | None = None
    for block in TWO_STAGE_BLOCKS:
        if block > len(table):
            break
        rows = raw.reshape(-1, block * eb).view(f"V{block * eb}").ravel()
        distinct = len(np.unique(rows))
        index = len(rows) * max(1, -(-(distinct - 1).bit_length() // 8))
        total = index + distinct * block * eb
        if best is None or total < best[0]:
            best = (total, block)
    if best is None:  # tables smaller than the smallest block: one block, one index entry
        return 1 + len(raw), len(table)
    return best


def bdd_bytes(table: np.ndarray, in_bits: int, out_bits: int) -> tuple[int, int]:
    """The BASELINES.md formula, and the length of bdd.py's serialization."""
    bdd = BDD.from_truth_table(table, in_bits, out_bits)
    return bdd.baseline_bytes(), bdd.nbytes


def zstd_blocks_bytes(data: bytes, level: int = 19) -> int:
    cctx = zstandard.ZstdCompressor(level=level)
    return sum(
        len(cctx.compress(data[i : i + BLOCK_BYTES])) for i in range(0, len(data), BLOCK_BYTES)
    )


def zstd_whole_bytes(data: bytes, level: int = 19) -> int:
    return len(zstandard.ZstdCompressor(level=level).compress(data))


def xz_whole_bytes(data: bytes) -> int:
    return len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))


def baseline_bytes(table: np.ndarray, in_bits: int, out_bits: int) -> dict[str, int]:
    """Every column for one truth table, in bytes."""
    data = byte_table(table, out_bits)
    bdd_formula, bdd_serialized = bdd_bytes(table, in_bits, out_bits)
    return {
        "packed": packed_bytes(in_bits, out_bits),
        "two_stage": two_stage_bytes(table, out_bits)[0],
        "bdd": bdd_formula,
        "zstd_4k": zstd_blocks_bytes(data),
        "zstd_whole": zstd_whole_bytes(data),
        "xz_whole": xz_whole_bytes(data),
        "bdd_serialized": bdd_serialized,
    }


def _fmt(ours: int, documented: int | None) -> str:
    if documented is None or ours == documented:
        return f"{ours:,}"
    return f"{ours:,} (doc {documented:,}, {100 * (ours - documented) / documented:+.2f}%)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SUITE), help="functions to measure")
    parser.add_argument("--json", type=Path, help="write the measured bytes here")
    args = parser.parse_args(argv)
    names = args.only or list(SUITE)
    results: dict[str, dict[str, int]] = {}
    mismatches = 0
    shown = COLUMNS + EXTRA_COLUMNS
    print("| function | n→m | " + " | ".join(_TITLES[c] for c in shown) + " | seconds |")
    print("|---|---|" + "---|" * (len(shown) + 1))
    for name in names:
        s = SUITE[name]
        t0 = time.perf_counter()
        table = truth_table(s.fn, s.in_bits)
        cols = baseline_bytes(table, s.in_bits, s.out_bits)
        seconds = time.perf_counter() - t0
        results[name] = cols
        doc = DOCUMENTED.get(name)
        cells = []
        for i, c in enumerate(shown):
            d = doc[i] if doc and i < len(doc) else None
            mismatches += d is not None and d != cols[c]
            cells.append(_fmt(cols[c], d))
        print(f"| {name} | {s.in_bits}→{s.out_bits} | " + " | ".join(cells) + f" | {seconds:.1f} |")
    print(f"\n{mismatches} cell(s) differ from BASELINES.md (random16 depends on its generator).")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
