"""End to end: ``simulacra bench stream --json`` starts its own server and child clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

LOAD_KEYS = {
    "app", "mode", "transport", "server", "session", "clients", "client_processes", "seconds",
    "width", "height", "fps", "latency_ms", "moves", "frames", "bytes_per_frame", "mismatches",
    "verified", "server_rss_mb", "server_rss_over_run_mb", "server_cpu_percent",
    "clients_rss_mb", "clients_cpu_percent", "process_note", "runner", "baselines",
    "video_bytes_source", "fan_out",
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_bench_stream_prints_one_object() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMULACRA_")}
    proc = subprocess.run(
        [
            sys.executable, "-m", "simulacra.cli", "bench", "stream", "--app", "2048",
            "--clients", "2", "--seconds", "1", "--transport", "ws", "--no-vp8",
            "--sample-frames", "5", "--reference", "--json",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1
    report = json.loads(proc.stdout)
    assert set(report) == LOAD_KEYS
    assert (report["app"], report["server"], report["clients"]) == ("2048", "in-process", 2)
    assert report["runner"] == "reference"
    assert report["mismatches"] == 0
    assert report["verified"] == report["frames"] > 0
    assert set(report["fps"]) == {"p50", "min", "controller"}
    assert set(report["latency_ms"]) == {"p50", "p99", "count"}
    assert report["server_rss_mb"] > 0 and report["server_cpu_percent"] >= 0
    rss = report["server_rss_over_run_mb"]
    assert set(rss) == {"start", "mid", "end", "peak", "samples"}
    assert 0 < rss["start"] <= rss["peak"] and rss["end"] <= rss["peak"]
    assert report["video_bytes_source"] is None
    fan_out = report["fan_out"]  # the in-process server's counters for the bench session
    assert fan_out["frames"] >= report["frames"] and fan_out["encodes"] >= 1
    assert fan_out["frames_per_encode"] == round(fan_out["frames"] / fan_out["encodes"], 2)
    cache = fan_out["tile_cache"]
    assert 0 < cache["entries"] <= cache["max_entries"] and cache["mb"] >= 0
    base = report["baselines"]
    assert base["frames"] == 5
    assert base["raw_full_frame"] == report["width"] * report["height"] * 3
    assert base["zlib_full_frame"] > 0 and base["tiles"] > 0
    over_run = base["over_run"]  # each baseline against our bytes per frame over the run
    ratio = base["zlib_full_frame"] / report["bytes_per_frame"]
    assert over_run["zlib_full_frame"] == pytest.approx(ratio, rel=0.01)  # bytes/frame is rounded


def test_bench_stream_bad_option_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "simulacra.cli", "bench", "stream", "--clients", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == "simulacra: clients must be 1..64, got 0\n"
