"""Load runner: N headless watchers and one controller on one shared session.

::

    run_load(LoadOptions)
      in-process Server (port 0, temp data dir)   or   --url of a running server
      session "bench":  controller ─Input─► app ─► framebuffer ─► Frame ─► controller
                                                              └──► watcher 1..N (view role)
      controller's first K verified pictures ─► FrameSample ─► baselines, same frames:
          raw_full_frame (W*H*3)   zlib_full_frame (each picture alone)   vp8 (lossy, libvpx)
      psutil on this process ─► server_rss_mb (peak), server_rss_over_run_mb (start, mid,
          end: is it flat?), server_cpu_percent
      ─► one report dict (the ``simulacra bench stream --json`` object)

    --mode video: watchers take the VP8 track (decoded frames, RTP payload bytes);
      the controller stays on tiles, so the baselines see exact pictures and its
      latency is the same input→Frame figure in both modes

    clients run in child processes (ClientsPlan as JSON on stdin, result on stdout):
      [controller] [watchers 1..k] [watchers k+1..] ...  so this process measures the server

Decoding a 2048 frame costs a client a few milliseconds of Python; N clients in
the server's process (or in one child) would queue behind each other and show
up as server latency, hence the child processes. The counts and the time are
bounded (``MAX_CLIENTS``, ``MAX_SECONDS``, ``MAX_SAMPLE_FRAMES``, ``MAX_PROCESSES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from simulacra import errors
from simulacra.client.headless import MODES, ClientOptions, HeadlessClient
from simulacra.client.transports import TRANSPORTS
from simulacra.errors import ConfigError, PayloadTooBig, SimulacraError, TransportError

__all__ = [
    "MAX_CLIENTS",
    "MAX_SECONDS",
    "MAX_SAMPLE_FRAMES",
    "MAX_PROCESSES",
    "WATCHERS_PER_PROCESS",
    "LoadOptions",
    "ClientsPlan",
    "FrameSample",
    "baselines",
    "split_tokens",
    "run_clients",
    "run_load",
]

MAX_CLIENTS = 64
MAX_SECONDS = 600.0
MAX_SAMPLE_FRAMES = 120  # about 100 MB of 480x560 pictures at most
MAX_PROCESSES = 16
_MAX_PLAN_CHARS = 64 * 1024
_MAX_CHILD_OUTPUT = 16 << 20
_MAX_RSS_SAMPLES = 4096  # 17 min at 4 samples/s; past it every other sample is dropped


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """One load run: ``clients`` watchers for ``seconds`` on one shared session."""

    app: str = "2048"
    clients: int = 4
    seconds: float = 5.0
    mode: str = "packed"
    url: str | None = None  # None: start a server in this process
    token: str = ""  # needed with url; every client uses it
    transport: str = "webrtc"
    session: str = "bench"
    sample_frames: int = 120
    vp8: bool = True
    timeout: float = 30.0
    processes: int | None = None  # watcher processes; None: by CPU count
    reference: bool = False  # in-process server: apps on reference code, not emulators
    # In-process server: compiled emulators are kept in data_dir/emulators (compiled
    # there on first use, as ``serve`` does); users and tokens stay in a temp dir.
    data_dir: Path | None = None
    progress: bool = False  # compile progress bars on stderr

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"transport must be one of {', '.join(TRANSPORTS)}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "video" and self.transport != "webrtc":
            raise ConfigError("video mode needs transport webrtc")
        if self.processes is not None and not 1 <= self.processes <= MAX_PROCESSES:
            raise ConfigError(f"processes must be 1..{MAX_PROCESSES}, got {self.processes}")
        if not 1 <= self.clients <= MAX_CLIENTS:
            raise ConfigError(f"clients must be 1..{MAX_CLIENTS}, got {self.clients}")
        if not 0 < self.seconds <= MAX_SECONDS:
            raise ConfigError(f"seconds must be in (0, {MAX_SECONDS:g}], got {self.seconds}")
        if not 1 <= self.sample_frames <= MAX_SAMPLE_FRAMES:
            raise ConfigError(
                f"sample_frames must be 1..{MAX_SAMPLE_FRAMES}, got {self.sample_frames}"
            )
        if not self.session:
            raise ConfigError("the load run needs a shared session name")
        if self.url is not None and not self.token:
            raise ConfigError("a token is needed with --url (pass --token)")


class FrameSample:
    """The first ``limit`` verified pictures one client saw, and their Frame sizes."""

    __slots__ = ("limit", "pictures", "sizes")

    def __init__(self, limit: int) -> None:
        if not 1 <= limit <= MAX_SAMPLE_FRAMES:
            raise ConfigError(f"sample size must be 1..{MAX_SAMPLE_FRAMES}, got {limit}")
        self.limit = limit
        self.pictures: list[np.ndarray] = []
        self.sizes: list[int] = []

    def __call__(self, picture: np.ndarray, size: int) -> None:
        if len(self.pictures) < self.limit:
            self.pictures.append(picture.copy())
            self.sizes.append(size)


def _vp8_bytes(pictures: list[np.ndarray]) -> list[int]:
    """Bytes per frame of libvpx VP8 (realtime, high quality: lossy all the same)."""
    import av  # PyAV: only the baseline needs it

    height, width = pictures[0].shape[:2]
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.bit_rate = 8_000_000
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "crf": "4"}
    sizes: list[int] = []
    for pts, picture in enumerate(pictures):
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts = pts
        sizes.extend(packet.size for packet in codec.encode(frame))
    sizes.extend(packet.size for packet in codec.encode(None))
    return sizes


def baselines(sample: FrameSample, *, vp8: bool = True) -> dict[str, Any]:
    """Bytes per frame of whole-frame baselines on the sampled pictures, and ours."""
    if not sample.pictures:
        return {"frames": 0}
    count = len(sample.pictures)
    ours = sum(sample.sizes) / count
    raw = sample.pictures[0].nbytes
    zlib_mean = sum(len(zlib.compress(p.tobytes(), 6)) for p in sample.pictures) / count
    out: dict[str, Any] = {
        "frames": count,
        "tiles": round(ours, 1),
        "raw_full_frame": raw,
        "zlib_full_frame": round(zlib_mean, 1),
        "raw_over_tiles": round(raw / ours, 2),
        "zlib_over_tiles": round(zlib_mean / ours, 2),
    }
    if vp8:
        try:
            vp8_sizes = _vp8_bytes(sample.pictures)
        except Exception as exc:  # a missing codec only loses this column
            out["vp8"] = None
            out["vp8_note"] = f"unavailable: {exc}"
        else:
            vp8_mean = sum(vp8_sizes) / count
            out["vp8"] = round(vp8_mean, 1)
            out["vp8_over_tiles"] = round(vp8_mean / ours, 2)
            out["vp8_note"] = "lossy (libvpx realtime, crf 4); ours is exact"
    return out


class _ProcessMonitor:
    """Peak RSS, RSS over time and CPU time of this process over the run."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.wall0 = time.perf_counter()
        rss = self.proc.memory_info().rss
        self.peak_rss = rss
        self.samples: list[tuple[float, int]] = [(0.0, rss)]
        times = self.proc.cpu_times()
        self.cpu0 = times.user + times.system

    def sample(self) -> None:
        rss = self.proc.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        if len(self.samples) >= _MAX_RSS_SAMPLES:
            self.samples = self.samples[::2]  # bounded; the shape of the curve stays
        self.samples.append((time.perf_counter() - self.wall0, rss))

    def over_run(self) -> dict[str, float]:
        """RSS (MiB) at the start, middle and end of the run, and its peak."""
        self.sample()
        end_t = self.samples[-1][0]
        mid = min(self.samples, key=lambda s: abs(s[0] - end_t / 2))
        mib = 2**20
        return {
            "start": round(self.samples[0][1] / mib, 1),
            "mid": round(mid[1] / mib, 1),
            "end": round(self.samples[-1][1] / mib, 1),
            "peak": round(self.peak_rss / mib, 1),
            "samples": len(self.samples),
        }

    def figures(self) -> tuple[float, float]:
        """(peak RSS in MiB, CPU percent of one core since the start; may pass 100)."""
        self.sample()
        times = self.proc.cpu_times()
        wall = max(time.perf_counter() - self.wall0, 1e-9)
        cpu = (times.user + times.system - self.cpu0) / wall * 100.0
        return round(self.peak_rss / 2**20, 1), round(cpu, 1)


async def _watch(
    monitor: _ProcessMonitor, seconds: float, progress: Callable[[float], None] | None
) -> None:
    start = time.perf_counter()
    while True:
        monitor.sample()
        if progress is not None:
            progress(min(seconds, time.perf_counter() - start))
        await asyncio.sleep(0.25)  # a sampling period, not a wait for state


@contextlib.asynccontextmanager
async def _monitored(
    seconds: float, progress: Callable[[float], None] | None = None
) -> AsyncIterator[_ProcessMonitor]:
    monitor = _ProcessMonitor()
    watch = asyncio.create_task(_watch(monitor, seconds, progress))
    try:
        yield monitor
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch


@dataclass(frozen=True, slots=True)
class ClientsPlan:
    """The clients one process runs; crosses to a child process as JSON.

    ``control_token`` empty: no controller here, only watchers.
    """

    url: str
    control_token: str
    watcher_tokens: tuple[str, ...]
    app: str = "2048"
    session: str = "bench"
    transport: str = "webrtc"
    mode: str = "packed"
    seconds: float = 5.0
    sample_frames: int = 120
    vp8: bool = True
    timeout: float = 30.0
    first_seed: int = 1

    def __post_init__(self) -> None:
        count = len(self.watcher_tokens) + (1 if self.control_token else 0)
        if not 1 <= count <= MAX_CLIENTS + 1:
            raise ConfigError(f"a plan runs 1..{MAX_CLIENTS + 1} clients, got {count}")
        if not 0 < self.seconds <= MAX_SECONDS:
            raise ConfigError(f"seconds must be in (0, {MAX_SECONDS:g}], got {self.seconds}")

    def to_json(self) -> str:
        return json.dumps({name: getattr(self, name) for name in self.__slots__})

    @classmethod
    def from_json(cls, text: str) -> ClientsPlan:
        if len(text) > _MAX_PLAN_CHARS:
            raise PayloadTooBig(f"load plan over {_MAX_PLAN_CHARS} characters")
        try:
            fields = json.loads(text)
            fields["watcher_tokens"] = tuple(fields["watcher_tokens"])
            return cls(**fields)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"bad load plan: {exc}") from None


def split_tokens(tokens: tuple[str, ...], parts: int) -> list[tuple[str, ...]]:
    """``tokens`` in ``parts`` groups as even as can be (no empty group)."""
    parts = max(1, min(parts, len(tokens)))
    size, extra = divmod(len(tokens), parts)
    groups, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        groups.append(tokens[start:end])
        start = end
    return groups


async def run_clients(plan: ClientsPlan) -> dict[str, Any]:
    """Run a plan's clients in this process: their reports, baselines, process figures."""
    sample = FrameSample(plan.sample_frames)

    def client_options(token: str, moves: int | None, seed: int, mode: str) -> ClientOptions:
        return ClientOptions(
            plan.url,
            token,
            transport=plan.transport,
            moves=moves,
            seconds=plan.seconds,
            app=plan.app,
            session=plan.session,
            mode=mode,
            seed=seed,
            timeout=plan.timeout,
            inbox=False,  # load clients only stream: no files API socket each
        )

    watchers = [
        HeadlessClient(client_options(token, 0, plan.first_seed + i, plan.mode))
        for i, token in enumerate(plan.watcher_tokens)
    ]
    # The controller samples exact pictures for the baselines, so it never takes video.
    control_mode = "packed" if plan.mode == "video" else plan.mode
    controller = (
        HeadlessClient(client_options(plan.control_token, None, 0, control_mode), on_frame=sample)
        if plan.control_token
        else None
    )
    async with _monitored(plan.seconds) as monitor:
        try:
            async with asyncio.TaskGroup() as group:
                watcher_tasks = [group.create_task(w.run()) for w in watchers]
                control_task = group.create_task(controller.run()) if controller else None
        except BaseExceptionGroup as failed:
            raise _first(failed) from None
        rss_mb, cpu = monitor.figures()
    return {
        "control": control_task.result() if control_task else None,
        "watchers": [t.result() for t in watcher_tasks],
        "baselines": (
            await asyncio.to_thread(baselines, sample, vp8=plan.vp8) if controller else None
        ),
        "rss_mb": rss_mb,
        "cpu_percent": cpu,
    }


def _first(failed: BaseExceptionGroup) -> BaseException:
    """The first failure of a task group: one line for the user says what went wrong."""
    first: BaseException = failed
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


async def _run_child(plan: ClientsPlan) -> dict[str, Any]:
    """Run ``plan`` in a child process (``python -m simulacra.client.load``)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulacra.client.load",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    # Tokens go through stdin, never the command line other users can read.
    budget = plan.seconds + 3 * plan.timeout
    try:
        out, err = await asyncio.wait_for(proc.communicate(plan.to_json().encode()), budget)
    except BaseException:
        # Timed out, or a sibling failed and this run is cancelled: leave no child behind.
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    result: Any = None
    if len(out) <= _MAX_CHILD_OUTPUT:
        with contextlib.suppress(ValueError):
            result = json.loads(out)
    if not isinstance(result, dict):
        lines = err.decode("utf-8", "replace").strip().splitlines()
        raise TransportError(
            f"load clients failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}"
        )
    if "error" in result:
        kind = getattr(errors, str(result["error"].get("type")), None)
        if not (isinstance(kind, type) and issubclass(kind, SimulacraError)):
            kind = TransportError
        raise kind(str(result["error"].get("message")))
    return result


# Watchers one child process holds by default. Measured on 2 cores (sand, 50
# watchers, 20 s, webrtc): 1 process of 50 gave 3 fps each, 4 processes 18 fps,
# 8 processes 9 fps (the server starves). One event loop running dozens of aiortc
# peers serializes their SCTP round trips long before it runs out of CPU.
WATCHERS_PER_PROCESS = 12


def _process_count(options: LoadOptions) -> int:
    if options.processes is not None:
        return options.processes
    # Leave a core to the server and one to the controller, but never pile
    # more than about WATCHERS_PER_PROCESS watchers onto one event loop.
    by_cpu = (os.cpu_count() or 2) - 2
    by_load = math.ceil(options.clients / WATCHERS_PER_PROCESS)
    return max(1, min(MAX_PROCESSES, max(by_cpu, by_load)))


async def _run_children(plans: list[ClientsPlan]) -> list[dict[str, Any]]:
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_run_child(plan)) for plan in plans]
    except BaseExceptionGroup as failed:
        raise _first(failed) from None
    return [task.result() for task in tasks]


def _share_emulators(options: LoadOptions, tmp: Path) -> None:
    """Point the temp data dir's ``emulators/`` at the kept ones, so they compile once."""
    if options.reference or options.data_dir is None:
        return
    kept = options.data_dir / "emulators"
    try:
        kept.mkdir(parents=True, exist_ok=True)
        (tmp / "emulators").symlink_to(kept.resolve(), target_is_directory=True)
    except OSError as exc:
        raise ConfigError(f"cannot use {kept} for compiled emulators: {exc}") from None


async def _poll(
    condition: Callable[[], bool], task: asyncio.Task[Any], deadline_s: float | None
) -> None:
    """Return once ``condition()`` holds or ``task`` is done; past the deadline, go on anyway."""
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    while not condition() and not task.done():
        if deadline is not None and time.monotonic() > deadline:
            return
        await asyncio.wait({task}, timeout=0.05)


async def run_load(
    options: LoadOptions, *, progress: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """Run the load and return the report (the ``--json`` object)."""

    def plans_for(
        url: str, control_token: str, watcher_tokens: tuple[str, ...]
    ) -> list[ClientsPlan]:
        def plan(control: str, watchers: tuple[str, ...], first_seed: int) -> ClientsPlan:
            return ClientsPlan(
                url,
                control,
                watchers,
                app=options.app,
                session=options.session,
                transport=options.transport,
                mode=options.mode,
                seconds=options.seconds,
                sample_frames=options.sample_frames,
                vp8=options.vp8,
                timeout=options.timeout,
                first_seed=first_seed,
            )

        plans = [plan(control_token, (), 0)]
        seed = 1
        for group in split_tokens(watcher_tokens, _process_count(options)):
            plans.append(plan("", group, seed))
            seed += len(group)
        return plans

    server_rss: float | None = None
    server_cpu: float | None = None
    server_rss_over_run: dict[str, float] | None = None
    fan_out: dict[str, Any] | None = None
    if options.url is not None:
        plans = plans_for(options.url, options.token, (options.token,) * options.clients)
        async with _monitored(options.seconds, progress):
            results = await _run_children(plans)
        where = options.url
        note = "the server runs elsewhere: no server figures"
    else:
        from simulacra.server import Server, ServerConfig  # only the in-process run needs it

        with tempfile.TemporaryDirectory(prefix="simulacra-bench-") as tmp:
            _share_emulators(options, Path(tmp))
            config = ServerConfig(
                host="127.0.0.1",
                port=0,
                data_dir=Path(tmp),
                app=options.app,
                reference=options.reference,
                progress=options.progress,
            )
            async with Server(config) as server:
                tokens = tuple(
                    server.add_user(f"bench-viewer-{i}", role="view")
                    for i in range(options.clients)
                )
                plans = plans_for(server.url, server.admin_token, tokens)
                children = asyncio.create_task(_run_children(plans))
                # Measure the server while it streams, not while the children import.
                await _poll(lambda: server.connection_count > 0, children, options.timeout * 2)
                async with _monitored(options.seconds, progress) as monitor:
                    await _poll(lambda: server.connection_count == 0, children, None)
                    server_rss, server_cpu = monitor.figures()
                    server_rss_over_run = monitor.over_run()
                results = await children
                fan_out = _fan_out(server, options)
        where = "in-process"
        note = (
            "server figures are this process (the in-process server alone) while clients "
            "were connected; the clients ran in child processes"
        )
    control: dict[str, Any] = results[0]["control"]
    watched: list[dict[str, Any]] = [w for r in results[1:] for w in r["watchers"]]
    everyone = [control, *watched]
    shown = [_shown(r) for r in everyone]
    fps = sorted(_shown(r)[1] for r in watched)
    frames = sum(f for f, _, _ in shown)
    frame_bytes = sum(b for _, _, b in shown)
    latency = control["latency_ms"]
    return {
        "app": control["app"],
        "mode": options.mode,
        "transport": options.transport,
        "server": where,
        "session": control["session"],
        "clients": options.clients,
        "client_processes": len(results),
        "seconds": options.seconds,
        "width": control["width"],
        "height": control["height"],
        "fps": {
            "p50": round(statistics.median(fps), 2) if fps else 0.0,
            "min": fps[0] if fps else 0.0,
            "controller": control["fps"],
        },
        "latency_ms": {"p50": latency["p50"], "p99": latency["p99"], "count": latency["count"]},
        "moves": control["moves"],
        "frames": frames,
        "bytes_per_frame": round(frame_bytes / frames, 1) if frames else 0.0,
        "video_bytes_source": "rtp payload" if options.mode == "video" else None,
        "mismatches": sum(r["mismatches"] for r in everyone),
        "verified": sum(r["verified"] for r in everyone),
        "server_rss_mb": server_rss,
        "server_rss_over_run_mb": server_rss_over_run,
        "server_cpu_percent": server_cpu,
        "clients_rss_mb": round(sum(r["rss_mb"] for r in results), 1),
        "clients_cpu_percent": round(sum(r["cpu_percent"] for r in results), 1),
        "fan_out": fan_out,
        "process_note": note,
        "runner": "reference" if options.reference and options.url is None else "emulators",
        "baselines": _with_run_ratios(
            results[0]["baselines"], frame_bytes / frames if frames else 0
        ),
    }


def _with_run_ratios(base: dict[str, Any], ours: float) -> dict[str, Any]:
    """The sampled baselines plus their ratio to our bytes per frame over the whole run.

    ``*_over_tiles`` compare the sampled frames only: the controller's first ones, which
    hold its join keyframe and the dictionary's warm-up; ``over_run`` compares each
    baseline's mean with what every client received on average over the run.
    """
    if not ours or not base.get("frames"):
        return base
    over_run = {
        name: round(base[name] / ours, 2)
        for name in ("raw_full_frame", "zlib_full_frame", "vp8")
        if isinstance(base.get(name), int | float)
    }
    return {**base, "over_run": over_run}


def _fan_out(server: Any, options: LoadOptions) -> dict[str, Any] | None:
    """The bench session's fan-out counters: how many frames each encode served."""
    if server.sessions is None:
        return None
    key, _ = server.sessions.key_for("", options.app, options.session)
    session = server.sessions.sessions.get(key)
    if session is None:
        return None
    stats = dataclasses.asdict(session.stats)
    encodes = stats["encodes"]
    stats["frames_per_encode"] = round(stats["frames"] / encodes, 2) if encodes else None
    stats["fork_seconds"] = round(stats["fork_seconds"], 3)
    # The server-wide encoded-tile cache grows until its bound, then stays: part of
    # any RSS rise late in a run (sand keeps making tiles never seen before).
    cache = server.sessions.cache
    stats["tile_cache"] = {
        "entries": len(cache),
        "max_entries": cache.max_entries,
        "mb": round(cache.nbytes / 2**20, 1),
    }
    return stats


def _shown(report: dict[str, Any]) -> tuple[int, float, float]:
    """(pictures shown, their fps, bytes that carried them) of one client's report.

    Tiles: Frames and Frame message bytes. Video: decoded VP8 frames and RTP payload bytes.
    """
    video = report.get("video")
    if video is not None:
        return int(video["frames"]), float(video["fps"]), float(video["bytes"])
    return (
        int(report["frames"]),
        float(report["fps"]),
        float(report["bytes_per_frame"]) * int(report["frames"]),
    )


def main() -> int:
    """Child entry point: a ClientsPlan as JSON on stdin, one JSON object on stdout."""
    try:
        plan = ClientsPlan.from_json(sys.stdin.read(_MAX_PLAN_CHARS + 1))
        result = asyncio.run(run_clients(plan))
    except SimulacraError as exc:
        print(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
