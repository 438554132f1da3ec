"""Load runner pieces: plans, token groups, frame samples, baselines; one short real run."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from simulacra.client.load import (
    MAX_SAMPLE_FRAMES,
    ClientsPlan,
    FrameSample,
    LoadOptions,
    baselines,
    run_clients,
    split_tokens,
)
from simulacra.errors import ConfigError, PayloadTooBig
from simulacra.server import Server, ServerConfig


def test_split_tokens_even_groups() -> None:
    tokens = tuple("abcdefg")
    assert split_tokens(tokens, 3) == [("a", "b", "c"), ("d", "e"), ("f", "g")]
    assert split_tokens(tokens, 1) == [tokens]
    assert split_tokens(("a", "b"), 5) == [("a",), ("b",)]


def test_plan_json_round_trip() -> None:
    plan = ClientsPlan("http://127.0.0.1:1", "ctl", ("v1", "v2"), seconds=2.5, vp8=False)
    assert ClientsPlan.from_json(plan.to_json()) == plan


def test_plan_rejects_bad_json() -> None:
    with pytest.raises(ConfigError, match="bad load plan"):
        ClientsPlan.from_json('{"url": "x"}')
    with pytest.raises(ConfigError, match="bad load plan"):
        ClientsPlan.from_json("not json")
    with pytest.raises(PayloadTooBig):
        ClientsPlan.from_json(" " * (64 * 1024 + 1))


def test_plan_needs_a_client() -> None:
    with pytest.raises(ConfigError):
        ClientsPlan("http://h:1", "", ())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clients": 0},
        {"clients": 65},
        {"seconds": 0},
        {"seconds": 601},
        {"sample_frames": 0},
        {"session": ""},
        {"url": "http://h:1"},  # without a token
        {"processes": 0},
        {"transport": "pigeon"},
        {"mode": "pixels"},
        {"mode": "video", "transport": "ws"},
    ],
)
def test_load_options_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        LoadOptions(**kwargs)  # type: ignore[arg-type]


def test_frame_sample_keeps_copies_up_to_its_limit() -> None:
    sample = FrameSample(2)
    picture = np.zeros((16, 16, 3), dtype=np.uint8)
    for size in (10, 20, 30):
        sample(picture, size)
        picture[:] += 1
    assert sample.sizes == [10, 20]
    assert [int(p[0, 0, 0]) for p in sample.pictures] == [0, 1]
    with pytest.raises(ConfigError):
        FrameSample(MAX_SAMPLE_FRAMES + 1)


def test_baselines_exact() -> None:
    rng = np.random.default_rng(1)
    pictures = [rng.integers(0, 4, (32, 64, 3), dtype=np.uint8) for _ in range(3)]
    sample = FrameSample(3)
    for picture, size in zip(pictures, (100, 40, 40), strict=True):
        sample(picture, size)
    zlib_mean = sum(len(zlib.compress(p.tobytes(), 6)) for p in pictures) / 3
    assert baselines(sample, vp8=False) == {
        "frames": 3,
        "tiles": 60.0,
        "raw_full_frame": 32 * 64 * 3,
        "zlib_full_frame": round(zlib_mean, 1),
        "raw_over_tiles": round(32 * 64 * 3 / 60, 2),
        "zlib_over_tiles": round(zlib_mean / 60, 2),
    }
    assert baselines(FrameSample(1)) == {"frames": 0}


def test_vp8_baseline_on_the_same_frames() -> None:
    sample = FrameSample(4)
    for shade in range(4):
        sample(np.full((32, 64, 3), shade * 40, dtype=np.uint8), 50)
    report = baselines(sample, vp8=True)
    assert report["frames"] == 4
    assert report["vp8"] is None or report["vp8"] > 0
    assert "vp8_note" in report


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    config = ServerConfig(
        host="127.0.0.1", port=0, data_dir=tmp_path / "data", app="2048", reference=True
    )
    async with Server(config) as srv:
        yield srv


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["ws", "webrtc"])
async def test_run_clients_in_process(server: Server, transport: str) -> None:
    watchers = tuple(server.add_user(f"w{i}", role="view") for i in range(2))
    plan = ClientsPlan(
        server.url, server.admin_token, watchers, transport=transport, seconds=1.0,
        sample_frames=4, vp8=False,
    )  # fmt: skip
    result = await run_clients(plan)
    control = result["control"]
    assert control["role"] == "control" and control["session"] == "bench"
    assert control["moves"] >= 1 and control["mismatches"] == 0
    assert [w["role"] for w in result["watchers"]] == ["view", "view"]
    for report in result["watchers"]:
        assert report["moves"] == 0
        assert report["frames"] >= 1 and report["mismatches"] == 0
        assert report["verified"] == report["frames"]
    assert result["baselines"]["frames"] == 4
    assert result["rss_mb"] > 0


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_run_clients_video_watchers(server: Server) -> None:
    watchers = (server.add_user("w0", role="view"),)
    plan = ClientsPlan(
        server.url, server.admin_token, watchers, mode="video", seconds=1.5,
        sample_frames=4, vp8=False,
    )  # fmt: skip
    result = await run_clients(plan)
    control = result["control"]
    assert control["mode"] == "packed" and control["video"] is None  # exact pictures sampled
    assert control["mismatches"] == 0 and result["baselines"]["frames"] == 4
    (watcher,) = result["watchers"]
    assert watcher["mode"] == "video" and watcher["frames"] == 0  # no Input: no Frame
    assert watcher["video"]["frames"] >= 1 and watcher["video"]["bytes"] > 0


def test_watchers_spread_over_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    from simulacra.client import load

    monkeypatch.setattr(load.os, "cpu_count", lambda: 2)
    assert load._process_count(LoadOptions(clients=10)) == 1
    assert load._process_count(LoadOptions(clients=50)) == 5  # ceil(50 / 12)
    assert load._process_count(LoadOptions(clients=50, processes=2)) == 2
    monkeypatch.setattr(load.os, "cpu_count", lambda: 64)
    assert load._process_count(LoadOptions(clients=4)) == load.MAX_PROCESSES
