"""Client-side decode speed: the vectorized path vs the per-tile reference, same run.

Runnable alone::

    python bench/display_decode.py [--frames N] [--repeat R] [--apps sand 2048] [--json OUT]

::

    app (reference runner, seeded script) ─► FrameEncoder ─► pack_tiles ─► DeflateStream
                                                   │ recorded PackedFrame payloads
                       ┌───────────────────────────┴──────────────────────────┐
          old: InflateStream ─► unpack_tiles_reference ─►       new: InflateStream ─► unpack_tiles ─►
               ReferenceFrameDecoder.apply ─►                        FrameDecoder.apply ─►
               CRC-32 of the whole picture                           tile-table checksum (written
                                                                     tiles + one audit window)
                       └──── both checksums == the server's, every frame ─────┘

Each pass replays the whole recording; old and new passes alternate and the
best pass of each counts. Printed: µs per frame for inflate, unpack, apply,
checksum and their total, and new / old (below 1: the new path is faster).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from apps import _adapt, script_events  # noqa: E402
from simulacra.apps import get_app  # noqa: E402
from simulacra.codecs.display import (  # noqa: E402
    DeflateStream,
    FrameDecoder,
    FrameEncoder,
    InflateStream,
    TileEncodeCache,
    pack_tiles,
    tile_table_checksum,
    unpack_tiles,
)
from simulacra.codecs.display.reference import (  # noqa: E402
    ReferenceFrameDecoder,
    unpack_tiles_reference,
)

# data, size, count, keyframe, CRC-32 of the picture, its tile-table checksum
Recorded = tuple[bytes, int, int, bool, int, int]
SLOTS = 4096  # the server's default dictionary_slots
KEYFRAME_EVERY = 300


def record(name: str, frames: int, seed: int) -> tuple[int, int, list[Recorded]]:
    """``frames`` PackedFrame payloads of app ``name`` driven by the apps bench's script."""
    app_cls = get_app(name)
    app = app_cls()
    state = app.reset(seed)
    script = script_events(name, seed)
    encoder = FrameEncoder(
        app_cls.width, app_cls.height, dictionary_slots=SLOTS, cache=TileEncodeCache()
    )
    stream = DeflateStream()
    out: list[Recorded] = []
    for i in range(frames):
        if i:
            state = app.step(state, _adapt(state, next(script)))
        keyframe = i % KEYFRAME_EVERY == 0
        tiles = encoder.encode(app.render(state), keyframe=keyframe)
        raw = pack_tiles(tiles)
        data = stream.compress(raw, keyframe=keyframe)
        table = tile_table_checksum(encoder.framebuffer)
        out.append((data, len(raw), len(tiles), keyframe, encoder.checksum(), table))
    return app_cls.width, app_cls.height, out


def replay(width: int, height: int, frames: list[Recorded], new: bool) -> dict[str, float]:
    """One pass over ``frames``: seconds spent in each stage."""
    inflater = InflateStream()
    decoder: FrameDecoder | ReferenceFrameDecoder
    unpack: Callable[[bytes, int, int], list[tuple[int, int, bytes]]]
    if new:
        decoder, unpack = FrameDecoder(width, height, dictionary_slots=SLOTS), unpack_tiles
    else:
        decoder = ReferenceFrameDecoder(width, height, dictionary_slots=SLOTS)
        unpack = unpack_tiles_reference
    tile_count = decoder.grid.count
    clock = time.perf_counter
    spent = {"inflate": 0.0, "unpack": 0.0, "apply": 0.0, "checksum": 0.0}
    for seq, (data, size, count, keyframe, crc, table) in enumerate(frames):
        t0 = clock()
        raw = inflater.inflate(data, size, keyframe=keyframe)
        t1 = clock()
        tiles = unpack(raw, count, tile_count)
        t2 = clock()
        decoder.apply(tiles, keyframe=keyframe)
        t3 = clock()
        # v1 checks the whole picture's CRC-32; packed clients now keep the tile table.
        ok = decoder.table_checksum() == table if new else decoder.checksum() == crc
        t4 = clock()
        if not ok:
            raise SystemExit(f"MISMATCH: {'new' if new else 'old'} path, frame {seq}")
        spent["inflate"] += t1 - t0
        spent["unpack"] += t2 - t1
        spent["apply"] += t3 - t2
        spent["checksum"] += t4 - t3
    spent["total"] = sum(spent.values())
    return spent


def bench_app(name: str, frames: int, repeat: int, seed: int) -> dict[str, Any]:
    width, height, recorded = record(name, frames, seed)
    tiles = sum(r[2] for r in recorded)
    best: dict[str, dict[str, float]] = {}
    for _ in range(repeat):
        for path in ("old", "new"):
            spent = replay(width, height, recorded, path == "new")
            prior = best.get(path)
            if prior is None or spent["total"] < prior["total"]:
                best[path] = spent
    per_frame = {
        path: {stage: s / len(recorded) * 1e6 for stage, s in spent.items()}
        for path, spent in best.items()
    }
    return {
        "app": name,
        "frames": len(recorded),
        "tiles_per_frame": tiles / len(recorded),
        "us_per_frame": per_frame,
    }


def table(results: list[dict[str, Any]]) -> str:
    stages = ("inflate", "unpack", "apply", "checksum", "total")
    lines = [
        f"{'app':<6} {'stage':<9} {'old µs/frame':>13} {'new µs/frame':>13} {'new/old':>8}",
    ]
    for r in results:
        old, new = r["us_per_frame"]["old"], r["us_per_frame"]["new"]
        for stage in stages:
            ratio = new[stage] / old[stage] if old[stage] else float("nan")
            lines.append(
                f"{r['app']:<6} {stage:<9} {old[stage]:>13.1f} {new[stage]:>13.1f} {ratio:>8.2f}"
            )
        lines.append(f"{'':<6} ({r['frames']} frames, {r['tiles_per_frame']:.0f} tiles/frame)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--apps", nargs="+", default=["sand", "2048"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = [bench_app(name, args.frames, args.repeat, args.seed) for name in args.apps]
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
