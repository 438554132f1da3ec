"""``simulacra client`` flags, environment variables and the human summary."""

from __future__ import annotations

import pytest

from simulacra.cli import build_parser
from simulacra.client.cli import format_load, format_summary, options_from_args
from simulacra.client.headless import ClientOptions


def parse(*argv: str) -> ClientOptions:
    return options_from_args(build_parser().parse_args(["client", *argv]))


def test_defaults_play_sixty_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOKEN", "TRANSPORT", "MOVES", "FRAMES", "SECONDS", "APP", "SESSION"):
        monkeypatch.delenv(f"SIMULACRA_{name}", raising=False)
    assert parse("http://127.0.0.1:9") == ClientOptions(
        "http://127.0.0.1:9", "", moves=60, mode="packed"
    )


def test_flags() -> None:
    options = parse(
        "http://h:1", "--token", "T", "--transport", "ws", "--frames", "5", "--seconds", "2.5",
        "--app", "sand", "--session", "room", "--seed", "3",
    )  # fmt: skip
    assert options == ClientOptions(
        "http://h:1", "T", transport="ws", moves=None, frames=5, seconds=2.5, app="sand",
        session="room", seed=3, mode="packed",
    )  # fmt: skip


def test_open_record_and_mode_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPEN", "RECORD", "MODE", "MOVES", "FRAMES", "SECONDS"):
        monkeypatch.delenv(f"SIMULACRA_{name}", raising=False)
    options = parse(
        "http://h:1", "--token", "T", "--open", "ABCD-EFGH", "--frames", "5",
        "--record", "/tmp/rec.bin", "--mode", "video", "--no-inbox",
    )  # fmt: skip
    assert options == ClientOptions(
        "http://h:1", "T", moves=None, frames=5, mode="video", open_code="ABCD-EFGH",
        record="/tmp/rec.bin", inbox=False,
    )  # fmt: skip
    assert parse("http://h:1").inbox is True


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMULACRA_TOKEN", "from-env")
    monkeypatch.setenv("SIMULACRA_TRANSPORT", "ws")
    monkeypatch.setenv("SIMULACRA_MOVES", "7")
    options = parse("http://h:1")
    assert (options.token, options.transport, options.moves) == ("from-env", "ws", 7)
    assert parse("http://h:1", "--token", "flag").token == "flag"


def test_bad_transport_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        parse("http://h:1", "--transport", "pigeon")


def test_summary() -> None:
    report = {
        "transport": "ws", "app": "2048", "session": "admin/2048", "user": "admin",
        "role": "control", "frames": 11, "verified": 11, "mismatches": 0, "keyframes": 1,
        "moves": 10, "latency_ms": {"p50": 4.0, "p99": 9.5, "mean": 5.0, "max": 9.5, "count": 10},
        "bytes": 30000, "bytes_per_frame": 2700.0, "fps": 120.0, "seconds": 0.09,
        "width": 480, "height": 560, "checksum": 1,
    }  # fmt: skip
    assert format_summary(report) == (
        "2048 session admin/2048 as admin (control) over ws: 480x560\n"
        "frames 11 (keyframes 1), verified 11, mismatches 0\n"
        "moves 10, latency ms p50 4.0 p99 9.5 max 9.5\n"
        "bytes 30000 (2700.0 per frame), 120.0 fps over 0.09 s"
    )


def test_summary_of_video_open_and_inbox() -> None:
    report = {
        "transport": "webrtc", "mode": "video", "app": "viewer", "session": "bob/viewer/e1",
        "user": "bob", "role": "control", "frames": 2, "verified": 0, "mismatches": 0,
        "keyframes": 0, "moves": 2,
        "latency_ms": {"p50": 4.0, "p99": 9.5, "mean": 5.0, "max": 9.5, "count": 2},
        "bytes": 300, "bytes_per_frame": 40.0, "fps": 2.0, "seconds": 1.0, "width": 640,
        "height": 480, "checksum": 1,
        "video": {
            "frames": 30, "fps": 30.0, "bytes": 60000, "packets": 60, "bytes_per_frame": 2000.0,
            "bytes_source": "rtp payload", "width": 640, "height": 480,
        },
        "open": {"name": "notes.txt", "size": 12, "type": "text/plain", "rights": "view"},
        "inbox": [{"inbox": 3, "from": "alice", "name": "a.txt", "received_ms": 12.5}],
    }  # fmt: skip
    assert format_summary(report).splitlines()[4:] == [
        "video 640x480: 30 frames, 30.0 fps, 60000 RTP payload bytes (2000.0 per frame)",
        "opened notes.txt (12 bytes, text/plain, view)",
        "inbox: 1 entries delivered while connected",
        "  a.txt from alice at 12.5 ms",
    ]


def test_load_table() -> None:
    report = {
        "app": "2048", "width": 480, "height": 560, "clients": 4, "transport": "ws",
        "seconds": 3.0, "server": "in-process", "fps": {"p50": 40.0, "min": 39.5},
        "latency_ms": {"p50": 9.5, "p99": 30.0}, "mismatches": 0, "server_rss_mb": 100.0,
        "server_cpu_percent": 60.0, "process_note": "server alone", "bytes_per_frame": 4500.0,
        "runner": "reference",
        "baselines": {
            "frames": 30, "tiles": 5000.0, "raw_full_frame": 806400, "zlib_full_frame": 9000.0,
            "raw_over_tiles": 161.28, "zlib_over_tiles": 1.8,
        },
    }  # fmt: skip
    assert format_load(report) == (
        "2048 (480x560), 4 watchers over ws for 3.0 s, server in-process (reference)\n"
        "fps p50 40.0 min 39.5; latency ms p50 9.5 p99 30.0; mismatches 0\n"
        "process rss 100.0 MB, cpu 60.0 % (server alone)\n"
        "\n"
        "bytes/frame on the same 30 frames   (x = size / ours)\n"
        "  ours (tiles)        5000.0  x1.0\n"
        "  raw_full_frame      806400  x161.28\n"
        "  zlib_full_frame     9000.0  x1.8\n"
        "all frames, all clients: 4500.0 bytes/frame"
    )
