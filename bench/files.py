"""Files benchmark: the block codec against classical per-file compressors.

Runnable alone::

    python bench/files.py [--files 2000] [--emulator-blocks 40] [--big-mib 16] [--json OUT]

Corpus: the Python standard library's ``.py`` files on this machine (a seeded
sample of at most ``--files``), split in two halves::

    train half ─► viewer dictionary (zstandard.train_dictionary, 32 KiB)
    test half  ─┬─► ours: 64 KiB blocks, each the smallest of raw | zstd -19 | zstd -19 + dict
                │         (+ 58 bytes of header and crc per block, + the dictionary once)
                ├─► zstd -19 per file          ├─► zstd -19 + the same dictionary per file
                └─► xz -9e per file
    small blocks (<= 1 KiB) ─► emulator codec (offset -> byte) vs zstd + dict: how often it wins
    one big file (--big-mib) ─► read one 4 KiB page (blocks it touches) vs decompress it whole

The key figures are ratios measured in this run: stored bytes of ours / each
baseline (below 1: ours is smaller) and whole-file decode time / page time.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import random
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import zstandard

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from simulacra.codecs.files.blobstore import BlobStore  # noqa: E402
from simulacra.codecs.files.blocks import (  # noqa: E402
    EMULATOR_MAX_BYTES,
    HEADER,
    _emulator_payload,
    encode_block,
)
from simulacra.codecs.files.dictionary import (  # noqa: E402
    DICTIONARY_BYTES,
    DictionaryStore,
    train_viewer_dictionary,
)

__all__ = ["corpus", "stored_bytes", "emulator_blocks", "page_vs_whole", "main"]

BLOCK = 64 * 1024
LEVEL = 19


def corpus(limit: int, seed: int = 0) -> list[bytes]:
    """A seeded sample of the standard library's ``.py`` files (each under 1 MiB)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    random.Random(seed).shuffle(paths)
    files = []
    for p in paths:
        try:
            data = p.read_bytes()
        except OSError:
            continue
        if 0 < len(data) <= 1 << 20:
            files.append(data)
        if len(files) >= limit:
            break
    return files


def _ours(
    data: bytes, zdict: zstandard.ZstdCompressionDict, sha: bytes
) -> tuple[int, int, dict[str, int]]:
    """Stored bytes (with framing), payload bytes, and codec counts of one file."""
    stored = payload = 0
    counts: dict[str, int] = {}
    for at in range(0, max(len(data), 1), BLOCK):
        enc = encode_block(
            data[at : at + BLOCK], dictionary=zdict, dict_sha256=sha, try_emulator=False
        )
        stored += len(enc.data)
        payload += len(enc.data) - HEADER.size - 4
        counts[enc.codec.name.lower()] = counts.get(enc.codec.name.lower(), 0) + 1
    return stored, payload, counts


def stored_bytes(files: list[bytes]) -> dict[str, Any]:
    half = len(files) // 2
    train, test = files[:half], files[half:]
    samples = [f[:BLOCK] for f in train]
    started = time.perf_counter()
    trained = train_viewer_dictionary(samples, DICTIONARY_BYTES)
    train_s = time.perf_counter() - started
    if trained is None:
        raise SystemExit("could not train a dictionary on this corpus")
    zdict = trained.zstd()
    plain = zstandard.ZstdCompressor(level=LEVEL)
    with_dict = zstandard.ZstdCompressor(level=LEVEL, dict_data=zdict)
    totals = {"raw": 0, "ours": 0, "ours_payload": 0, "zstd19": 0, "zstd19_dict": 0, "xz9e": 0}
    codecs: dict[str, int] = {}
    seconds = dict.fromkeys(("ours", "zstd19", "zstd19_dict", "xz9e"), 0.0)
    for data in test:
        totals["raw"] += len(data)
        t = time.perf_counter()
        stored, payload, counts = _ours(data, zdict, trained.sha256)
        seconds["ours"] += time.perf_counter() - t
        totals["ours"] += stored
        totals["ours_payload"] += payload
        for k, v in counts.items():
            codecs[k] = codecs.get(k, 0) + v
        t = time.perf_counter()
        totals["zstd19"] += len(plain.compress(data))
        seconds["zstd19"] += time.perf_counter() - t
        t = time.perf_counter()
        totals["zstd19_dict"] += len(with_dict.compress(data))
        seconds["zstd19_dict"] += time.perf_counter() - t
        t = time.perf_counter()
        totals["xz9e"] += len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
        seconds["xz9e"] += time.perf_counter() - t
    return {
        "train_files": len(train),
        "test_files": len(test),
        "dictionary_bytes": len(trained.data),
        "train_seconds": round(train_s, 3),
        "bytes": totals,
        "block_codecs": codecs,
        "encode_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "zdict": zdict,
        "dict_sha": trained.sha256,
        "test": test,
    }


def emulator_blocks(
    test: list[bytes], zdict: Any, sha: bytes, limit: int, budget_s: float
) -> dict[str, Any]:
    """Small blocks through the emulator codec: how often it beats zstd + dictionary."""
    small = [f for f in test if 0 < len(f) <= EMULATOR_MAX_BYTES][:limit]
    # Tail blocks of larger files are small blocks too.
    small += [
        f[-(len(f) % BLOCK) :]
        for f in test
        if len(f) > BLOCK and 0 < len(f) % BLOCK <= EMULATOR_MAX_BYTES
    ]
    small = small[:limit]
    tried = wins = saved = gated = 0
    started = time.perf_counter()
    for raw in small:
        if time.perf_counter() - started > budget_s:
            break
        best = encode_block(raw, dictionary=zdict, dict_sha256=sha, try_emulator=False)
        # Compile every small block (the store only tries those zstd leaves large).
        payload = _emulator_payload(raw, float("inf"))
        tried += 1
        gated += (len(best.data) - HEADER.size - 4) * 4 > len(raw)
        if payload is not None and len(payload) + HEADER.size + 4 < len(best.data):
            wins += 1
            saved += len(best.data) - len(payload) - HEADER.size - 4
    # A block that is a function of its offset, for scale: where the emulator shines.
    ramp = bytes(range(256)) * 4
    ramp_emu = len(encode_block(ramp).data)
    ramp_zstd = len(encode_block(ramp, try_emulator=False).data)
    return {
        "tried": tried,
        "store_would_try": gated,
        "wins": wins,
        "bytes_saved": saved,
        "seconds": round(time.perf_counter() - started, 2),
        "ramp_block": {"emulator": ramp_emu, "zstd": ramp_zstd},
    }


def page_vs_whole(
    files: list[bytes], zdict_sha: bytes, zdict_bytes: bytes, mib: int, pages: int = 50
) -> dict[str, Any]:
    big = b""
    i = 0
    while len(big) < mib << 20 and files:
        big += files[i % len(files)]
        i += 1
    big = big[: mib << 20]
    sha = hashlib.sha256(big).hexdigest()
    whole_frame = zstandard.ZstdCompressor(level=LEVEL).compress(big)
    with tempfile.TemporaryDirectory() as tmp:
        dicts = DictionaryStore(Path(tmp) / "dictionaries")
        from simulacra.codecs.files.dictionary import ViewerDictionary

        dicts.add(ViewerDictionary(zdict_sha, zdict_bytes))
        blobs = BlobStore(Path(tmp) / "blobs", dicts, try_emulator=False)
        t = time.perf_counter()
        info = blobs.put(io.BytesIO(big), sha, len(big))
        store_s = time.perf_counter() - t
        rng = random.Random(1)
        page_times = []
        for _ in range(pages):
            start = rng.randrange(0, len(big) - 4096)
            t = time.perf_counter()
            got = blobs.read(sha, start, start + 4096)
            page_times.append(time.perf_counter() - t)
            assert got == big[start : start + 4096]
        whole_times = []
        for _ in range(3):
            t = time.perf_counter()
            out = zstandard.ZstdDecompressor().decompress(whole_frame)
            whole_times.append(time.perf_counter() - t)
            assert out == big
        t = time.perf_counter()
        assert blobs.read_all(sha) == big
        ours_whole = time.perf_counter() - t
    page = statistics.median(page_times)
    whole = statistics.median(whole_times)
    return {
        "bytes": len(big),
        "stored_ours": info.stored_bytes,
        "stored_zstd19_whole": len(whole_frame),
        "store_seconds": round(store_s, 2),
        "page_ms": round(page * 1000, 3),
        "whole_zstd_ms": round(whole * 1000, 2),
        "whole_ours_ms": round(ours_whole * 1000, 2),
        "whole_over_page": round(whole / page, 1),
    }


def _row(name: str, value: str, note: str = "") -> str:
    return f"  {name:<44} {value:>14}  {note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="corpus size (files)")
    parser.add_argument("--emulator-blocks", type=int, default=40, help="small blocks to try")
    parser.add_argument("--emulator-seconds", type=float, default=60.0, help="time budget")
    parser.add_argument("--big-mib", type=int, default=16, help="size of the big file")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    files = corpus(args.files)
    print(f"corpus: {len(files)} stdlib .py files, {sum(map(len, files)) / 1e6:.1f} MB", flush=True)
    sb = stored_bytes(files)
    b = sb["bytes"]
    ours_total = b["ours"] + sb["dictionary_bytes"]
    print(
        f"\nstored bytes, test half ({sb['test_files']} files; dictionary trained on the other "
        f"{sb['train_files']}, {sb['dictionary_bytes']} bytes, {sb['train_seconds']} s)"
    )
    print(_row("raw", f"{b['raw']:,}"))
    print(
        _row(
            "ours (blocks + headers + dictionary once)",
            f"{ours_total:,}",
            f"{ours_total / b['raw']:.3f} of raw",
        )
    )
    print(
        _row(
            "ours, payload only",
            f"{b['ours_payload']:,}",
            f"{b['ours_payload'] / b['raw']:.3f} of raw",
        )
    )
    print(_row("zstd -19 per file", f"{b['zstd19']:,}", f"{b['zstd19'] / b['raw']:.3f} of raw"))
    print(
        _row(
            "zstd -19 + dictionary per file",
            f"{b['zstd19_dict']:,}",
            f"{b['zstd19_dict'] / b['raw']:.3f} of raw",
        )
    )
    print(_row("xz -9e per file", f"{b['xz9e']:,}", f"{b['xz9e'] / b['raw']:.3f} of raw"))
    print("  ratios (ours / baseline; < 1 = ours smaller):")
    for key, label in (
        ("zstd19", "zstd -19"),
        ("zstd19_dict", "zstd -19 + dict"),
        ("xz9e", "xz -9e"),
    ):
        print(_row(f"  ours / {label}", f"{ours_total / b[key]:.3f}"))
    print(_row("  block codecs chosen", json.dumps(sb["block_codecs"])))
    print(_row("  encode seconds", json.dumps(sb["encode_seconds"])))

    emu = emulator_blocks(
        sb["test"], sb["zdict"], sb["dict_sha"], args.emulator_blocks, args.emulator_seconds
    )
    print(f"\nemulator codec on small blocks (<= {EMULATOR_MAX_BYTES} B; offset -> byte)")
    print(
        _row(
            "blocks compiled / won against zstd + dict",
            f"{emu['tried']} / {emu['wins']}",
            f"{emu['bytes_saved']} bytes saved, {emu['seconds']} s",
        )
    )
    print(_row("  of which the store would try (zstd > 1/4 raw)", f"{emu['store_would_try']}"))
    ramp = emu["ramp_block"]
    print(
        _row(
            "a 1 KiB ramp block: emulator / zstd bytes",
            f"{ramp['emulator']} / {ramp['zstd']}",
            f"{ramp['emulator'] / ramp['zstd']:.3f}",
        )
    )

    pv = page_vs_whole(files, sb["dict_sha"], sb["zdict"].as_bytes(), args.big_mib)
    print(f"\nregenerate one 4 KiB page of a {pv['bytes'] / 2**20:.0f} MiB file")
    print(_row("page via our blocks (median of 50)", f"{pv['page_ms']} ms"))
    print(_row("whole file, zstd -19 single frame", f"{pv['whole_zstd_ms']} ms"))
    print(_row("whole file, our blocks (+ sha256 check)", f"{pv['whole_ours_ms']} ms"))
    print(_row("whole zstd / one page (x faster)", f"{pv['whole_over_page']}"))
    print(
        _row(
            "stored: ours / zstd -19 whole-file frame",
            f"{pv['stored_ours'] / pv['stored_zstd19_whole']:.3f}",
        )
    )

    if args.json is not None:
        out = {k: v for k, v in sb.items() if k not in ("zdict", "dict_sha", "test")}
        out.update({"emulator": emu, "page": pv, "corpus_files": len(files)})
        args.json.write_text(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
