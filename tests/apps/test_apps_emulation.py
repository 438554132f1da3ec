"""Apps through emulators: the cache in the data directory, patches, and whole runs."""

from __future__ import annotations

import importlib.util
import logging
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulacra.apps import get_app
from simulacra.apps.base import App, InputEvent
from simulacra.apps.emulation import (
    EmulatedRunner,
    SegmentStore,
    load_or_compile_segments,
    segment_key,
    segment_summary,
)
from simulacra.errors import ConfigError, NotFound

TINY_SOURCE = """
from typing import ClassVar
import numpy as np
from simulacra.apps.base import App, Segment


def double(xs):
    return (np.asarray(xs, dtype=np.uint64) * np.uint64({factor})) & np.uint64(0xFF)


class Tiny(App):
    name: ClassVar[str] = "tiny"
    title: ClassVar[str] = "tiny"
    width: ClassVar[int] = 16
    height: ClassVar[int] = 16
    segments = (Segment("double", 8, 8, double),)

    def reset(self, seed):
        return seed

    def step(self, state, event):
        return int(self.runner["double"](np.array([state], dtype=np.uint64))[0])

    def render(self, state):
        return np.full((16, 16, 3), state, dtype=np.uint8)
"""


def tiny_app(tmp_path: Path, factor: int) -> type[App]:
    """A one-segment app loaded from a source file, so its code can change between loads."""
    name = f"tiny_app_{factor}"
    path = tmp_path / f"{name}.py"
    path.write_text(TINY_SOURCE.format(factor=factor))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.Tiny  # type: ignore[no-any-return]


def test_compiles_once_then_reuses_the_cache(tmp_path: Path, fake_codec: Any) -> None:
    codec = fake_codec
    tiny = tiny_app(tmp_path, 2)
    runner = load_or_compile_segments(tiny, tmp_path / "data", progress=False, codec=codec)
    assert codec.compiles == ["double"]
    assert runner["double"](np.array([3, 200], dtype=np.uint64)).tolist() == [6, 144]
    again = load_or_compile_segments(tiny, tmp_path / "data", progress=False, codec=codec)
    assert codec.compiles == ["double"]  # the restart loaded the artifact
    assert again["double"](np.array([5], dtype=np.uint64)).tolist() == [10]
    files = sorted(p.name for p in (tmp_path / "data" / "emulators" / "tiny").iterdir())
    assert files == [f"double-{segment_key(tiny.segments[0], codec)}.emu"]


def test_changed_code_invalidates_the_cache(tmp_path: Path, fake_codec: Any) -> None:
    codec = fake_codec
    old, new = tiny_app(tmp_path, 2), tiny_app(tmp_path, 3)
    assert segment_key(old.segments[0], codec) != segment_key(new.segments[0], codec)
    load_or_compile_segments(old, tmp_path, progress=False, codec=codec)
    runner = load_or_compile_segments(new, tmp_path, progress=False, codec=codec)
    assert codec.compiles == ["double", "double"]
    assert runner["double"](np.array([5], dtype=np.uint64)).tolist() == [15]
    # The artifact built from the old code is gone; only the current one is kept.
    assert len(list((tmp_path / "emulators" / "tiny").glob("double-*.emu"))) == 1


def test_codec_version_is_part_of_the_key(tmp_path: Path, fake_codec: Any) -> None:
    tiny = tiny_app(tmp_path, 2)
    a, b = fake_codec, type(fake_codec)()
    b.CODEC_VERSION = 2
    assert segment_key(tiny.segments[0], a) != segment_key(tiny.segments[0], b)


def test_corrupt_cache_recompiles_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fake_codec: Any
) -> None:
    codec = fake_codec
    tiny = tiny_app(tmp_path, 2)
    load_or_compile_segments(tiny, tmp_path, progress=False, codec=codec)
    (path,) = (tmp_path / "emulators" / "tiny").glob("double-*.emu")
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="simulacra.apps.emulation"):
        runner = load_or_compile_segments(tiny, tmp_path, progress=False, codec=codec)
    assert codec.compiles == ["double", "double"]
    assert any("corrupt cached emulator" in r.getMessage() for r in caplog.records)
    assert runner["double"](np.arange(4, dtype=np.uint64)).tolist() == [0, 2, 4, 6]
    assert codec.load_emulator(path).query(np.array([7])).tolist() == [14]  # rewritten


def test_patches_are_versioned_and_picked_up_by_a_running_runner(
    tmp_path: Path, fake_codec: Any
) -> None:
    codec = fake_codec
    tiny = tiny_app(tmp_path, 2)
    server = load_or_compile_segments(tiny, tmp_path, progress=False, codec=codec)
    admin = SegmentStore(tiny, tmp_path, codec=codec)  # what `simulacra apps patch` uses
    xs = np.array([3, 4], dtype=np.uint64)
    assert admin.patch("double", {3: 99}) == 1
    assert admin.patch("double", {4: 1, 3: 98}) == 2
    assert server["double"](xs).tolist() == [6, 8]  # not yet refreshed
    assert server.refresh() == ["double"]
    assert server["double"](xs).tolist() == [98, 1] and server.versions["double"] == 2
    assert server.refresh() == []
    assert [(v.version, v.patches) for v in server.patches("double")] == [
        (1, ((3, 99),)),
        (2, ((3, 98), (4, 1))),
    ]
    assert admin.unpatch("double") == 1
    assert server.refresh() == ["double"]
    assert server["double"](xs).tolist() == [99, 8]
    assert server.unpatch("double") == 0
    assert server["double"](xs).tolist() == [6, 8]
    with pytest.raises(NotFound, match="no patches to revert"):
        server.unpatch("double")
    assert codec.compiles == ["double"]
    assert sorted(p.name for p in (tmp_path / "emulators" / "tiny").iterdir()) == [
        f"double-{segment_key(tiny.segments[0], codec)}.emu"
    ]


def test_lost_version_file_is_rebuilt_from_the_manifest(tmp_path: Path, fake_codec: Any) -> None:
    codec = fake_codec
    tiny = tiny_app(tmp_path, 2)
    store = SegmentStore(tiny, tmp_path, codec=codec)
    store.patch("double", {1: 50})
    store.patch("double", {2: 60})
    store.version_path("double", 2).unlink()
    runner = load_or_compile_segments(tiny, tmp_path, progress=False, codec=codec)
    assert runner["double"](np.array([1, 2, 3], dtype=np.uint64)).tolist() == [50, 60, 6]
    assert store.version_path("double", 2).is_file()


def test_patch_checks_its_arguments(tmp_path: Path, fake_codec: Any) -> None:
    store = SegmentStore(tiny_app(tmp_path, 2), tmp_path, codec=fake_codec)
    with pytest.raises(ConfigError, match="does not fit in 8 bits"):
        store.patch("double", {256: 1})
    with pytest.raises(ConfigError, match="output 0x100 does not fit"):
        store.patch("double", {1: 256})
    with pytest.raises(ConfigError, match="nothing to patch"):
        store.patch("double", {})
    with pytest.raises(NotFound, match="no segment 'triple'; segments: double"):
        store.patch("triple", {1: 1})


def test_runner_counts_queries_and_fallbacks(tmp_path: Path, fake_codec: Any) -> None:
    runner = load_or_compile_segments(tiny_app(tmp_path, 2), tmp_path, False, codec=fake_codec)
    assert isinstance(runner, EmulatedRunner) and list(runner) == ["double"] and len(runner) == 1
    runner["double"](np.arange(10, dtype=np.uint64))
    assert runner.stats() == {"double": {"queries": 10, "fallbacks": 0, "version": 0}}
    # Past the domain the reference answers, and that is counted.
    assert runner["double"](np.array([1, 300], dtype=np.uint64)).tolist() == [2, 88]
    assert runner.fallbacks["double"] == 1 and runner.queries["double"] == 12


def test_summary_does_not_compile(tmp_path: Path, fake_codec: Any) -> None:
    codec = fake_codec
    tiny = tiny_app(tmp_path, 2)
    (info,) = segment_summary(tiny, tmp_path, codec=codec)
    assert (info.compiled, info.nbytes, info.packed_bytes, info.verified) == (
        False,
        None,
        256,
        None,
    )
    assert codec.compiles == []
    load_or_compile_segments(tiny, tmp_path, progress=False, codec=codec)
    (info,) = segment_summary(tiny, tmp_path, codec=codec)
    assert info.as_dict() == {
        "app": "tiny",
        "segment": "double",
        "in_bits": 8,
        "out_bits": 8,
        "key": info.key,
        "compiled": True,
        "version": 0,
        "bytes": 2048,
        "packed_bytes": 256,
        "verified": True,
        "review_regions": [],
    }


def scripted_events(app_name: str, steps: int) -> list[InputEvent | None]:
    rng = np.random.default_rng(2026)
    if app_name == "2048":
        keys = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "a", "w", "s", "d"]
        events: list[InputEvent | None] = [
            InputEvent("key", keys[int(k)]) for k in rng.integers(0, 8, steps)
        ]
        events[steps // 2] = InputEvent("key", "r")
        return events
    out: list[InputEvent | None] = []
    for i in range(steps):
        if i % 25 == 5:
            out.append(InputEvent("select", key=["sand", "water", "wall", "empty"][i % 4]))
        elif i % 7 == 0:
            x, y = (int(v) for v in rng.integers(0, [512, 384]))
            out.append(InputEvent("pointer", x=x, y=y, buttons=1))
        else:
            out.append(None)
    return out


def checksums(app: App, events: list[InputEvent | None]) -> list[int]:
    state = app.reset(7)
    sums = [zlib.crc32(app.render(state).tobytes())]
    for event in events:
        state = app.step(state, event)
        sums.append(zlib.crc32(app.render(state).tobytes()))
    return sums


@pytest.mark.parametrize("app_name", ["2048", "sand"])
def test_emulated_run_matches_reference_every_frame(
    tmp_path: Path, app_name: str, fake_codec: Any
) -> None:
    app_cls = get_app(app_name)
    runner = load_or_compile_segments(app_cls, tmp_path, progress=False, codec=fake_codec)
    events = scripted_events(app_name, 500)
    assert checksums(app_cls(runner), events) == checksums(app_cls(), events)
    assert all(runner.queries[s.name] > 0 for s in app_cls.segments)
    assert all(runner.fallbacks[s.name] == 0 for s in app_cls.segments)


class CountingCodec:
    """The real codec, counting compiles."""

    def __init__(self) -> None:
        import simulacra.codecs.emulator as real

        self.real = real
        self.compiles: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def compile_emulator(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.compiles.append(fn.__name__)
        return self.real.compile_emulator(fn, *args, **kwargs)


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory: pytest.TempPathFactory, compiled_emulators: Any) -> Path:
    """A copy of the run's one compile of 2048 and sand (tests/conftest.py)."""
    return compiled_emulators.copy_into(tmp_path_factory.mktemp("real-emulators"))


@pytest.mark.slow
@pytest.mark.parametrize("app_name", ["sand", "2048"])
def test_real_emulators_run_apps_exactly(real_cache: Path, app_name: str) -> None:
    app_cls = get_app(app_name)
    codec = CountingCodec()
    runner = load_or_compile_segments(app_cls, real_cache, progress=False, codec=codec)
    assert codec.compiles == []  # the shared compile is loaded, never redone
    events = scripted_events(app_name, 500)
    assert checksums(app_cls(runner), events) == checksums(app_cls(), events)
    assert all(runner.queries[s.name] > 0 for s in app_cls.segments)
    assert all(runner.fallbacks[s.name] == 0 for s in app_cls.segments)
    # A restart loads every artifact from the cache.
    again = CountingCodec()
    restarted = load_or_compile_segments(app_cls, real_cache, progress=False, codec=again)
    assert again.compiles == []
    for s in app_cls.segments:
        xs = np.arange(min(1 << s.in_bits, 4096), dtype=np.uint64)
        assert np.array_equal(restarted[s.name](xs), s.reference(xs))
    assert all(i.verified for i in segment_summary(app_cls, real_cache, codec=again))
