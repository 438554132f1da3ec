"""``simulacra client``: run the headless client against a server.

::

    simulacra client URL --token T [--transport webrtc|ws] [--mode packed|tiles|video]
                     [--moves N] [--frames N] [--seconds S] [--app A] [--session S]
                     [--open CODE] [--record FILE] [--no-inbox] [--json]
        └─► ClientOptions ─► HeadlessClient.run() ─► report: one JSON object, or a summary

``--open CODE`` redeems a regeneration code and streams the viewer of its entry;
``--record FILE`` writes every byte received to FILE.

Every flag also reads ``SIMULACRA_<FLAG>`` (``SIMULACRA_TOKEN``, ...). The token
may also ride in the URL (``?token=``). With no limit given the client plays 60 moves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulacra.config import add_option

if TYPE_CHECKING:
    from simulacra.client.headless import ClientOptions

__all__ = ["register", "DEFAULT_MOVES", "options_from_args", "format_summary", "format_load"]

DEFAULT_MOVES = 60


def register(subparsers: Any) -> None:
    """Add the ``client`` and ``bench`` subcommands."""
    parser = subparsers.add_parser(
        "client",
        help="headless client: play an app, verify every frame, report figures",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("url", help="server URL, e.g. http://127.0.0.1:8080 (may carry ?token=)")
    add_option(parser, "--token", default="", help="access token")
    add_option(parser, "--transport", default="webrtc", choices=("webrtc", "ws"), help="carrier")
    add_option(parser, "--moves", default=None, type=int, help="inputs to play")
    add_option(parser, "--frames", default=None, type=int, help="stop after this many frames")
    add_option(parser, "--seconds", default=None, type=float, help="stop after this long")
    add_option(parser, "--app", default="", help="app to open ('' = server default)")
    add_option(parser, "--session", default="", help="shared session name ('' = your own)")
    add_option(
        parser,
        "--mode",
        default="packed",
        choices=("packed", "tiles", "video"),
        help="display mode: packed (deflated tile stream), tiles (plain tiles) or video (VP8)",
    )
    add_option(parser, "--seed", default=0, type=int, help="seed of the move pattern")
    add_option(parser, "--timeout", default=15.0, type=float, help="seconds to wait for the server")
    add_option(parser, "--open", default="", help="redeem this regeneration code and view its file")
    add_option(parser, "--record", default="", help="write every byte received to this file")
    parser.add_argument(
        "--no-inbox",
        action="store_true",
        help="do not listen on the files API for inbox entries while connected",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_run_client)
    _register_bench(subparsers)


def _register_bench(subparsers: Any) -> None:
    bench = subparsers.add_parser("bench", help="load figures against a server")
    kinds = bench.add_subparsers(dest="bench", metavar="BENCH")
    parser = kinds.add_parser(
        "stream",
        help="N watchers and one controller on one shared session; fps, latency, bytes",
        description="Stream to N headless watchers of one shared session and report "
        "fps, latency, bytes per frame, process load and whole-frame baselines.",
    )
    add_option(parser, "--app", default="2048", help="app to stream")
    add_option(parser, "--clients", default=4, type=int, help="watchers (1..64)")
    add_option(parser, "--seconds", default=5.0, type=float, help="length of the run")
    add_option(
        parser,
        "--mode",
        default="packed",
        choices=("packed", "tiles", "video"),
        help="display mode: packed (deflated tile stream), tiles (plain tiles) or video (VP8)",
    )
    add_option(parser, "--url", default=None, help="a running server (default: start one here)")
    add_option(parser, "--token", default="", help="token for --url")
    add_option(parser, "--transport", default="webrtc", choices=("webrtc", "ws"), help="carrier")
    add_option(parser, "--sample-frames", default=120, type=int, help="frames for the baselines")
    add_option(
        parser,
        "--processes",
        default=None,
        type=int,
        help="child processes for the watchers (default: CPU count - 2, and at least one "
        "per 12 watchers)",
    )
    parser.add_argument("--no-vp8", action="store_true", help="skip the VP8 baseline")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="in-process server runs apps on reference code instead of the emulators",
    )
    add_option(
        parser,
        "--data",
        default="data",
        type=Path,
        help="data directory of `serve`: compiled emulators are taken from (and kept in) "
        "its emulators/; users and tokens of the run stay in a temp dir",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_run_bench_stream)
    bench.set_defaults(handler=lambda args: _bench_help(bench))


def _bench_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def options_from_args(args: argparse.Namespace) -> ClientOptions:
    """The ClientOptions the parsed flags ask for (60 moves when no limit is given)."""
    from simulacra.client.headless import ClientOptions

    moves = args.moves
    if moves is None and args.frames is None and args.seconds is None:
        moves = DEFAULT_MOVES
    return ClientOptions(
        url=args.url,
        token=args.token,
        transport=args.transport,
        moves=moves,
        frames=args.frames,
        seconds=args.seconds,
        app=args.app,
        session=args.session,
        mode=args.mode,
        seed=args.seed,
        timeout=args.timeout,
        open_code=args.open,
        record=args.record,
        inbox=not args.no_inbox,
    )


def _run_client(args: argparse.Namespace) -> int:
    # Imported here: aiortc is slow to import and other subcommands never need it.
    from simulacra.client.headless import HeadlessClient

    report = asyncio.run(HeadlessClient(options_from_args(args)).run())
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    else:
        print(format_summary(report))
    # Frames that failed their checksum are a failed run even though it completed.
    return 0 if report["mismatches"] == 0 else 1


def _run_bench_stream(args: argparse.Namespace) -> int:
    import sys

    from simulacra.client.load import LoadOptions, run_load

    options = LoadOptions(
        app=args.app,
        clients=args.clients,
        seconds=args.seconds,
        mode=args.mode,
        url=args.url,
        token=args.token,
        transport=args.transport,
        sample_frames=args.sample_frames,
        processes=args.processes,
        vp8=not args.no_vp8,
        reference=args.reference,
        data_dir=args.data,
        progress=sys.stderr.isatty(),
    )
    progress = None
    bar: Any = None
    if options.seconds > 2 and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=round(options.seconds, 1), unit="s", desc="bench stream", file=sys.stderr)

        def progress(done: float) -> None:
            bar.n = round(done, 1)
            bar.refresh()

    try:
        report = asyncio.run(run_load(options, progress=progress))
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    else:
        print(format_load(report))
    return 0 if report["mismatches"] == 0 else 1


def format_load(report: dict[str, Any]) -> str:
    """A small table for a load report; the ratios are measured in the same run."""
    base = report["baselines"]
    lines = [
        f"{report['app']} ({report['width']}x{report['height']}), {report['clients']} watchers "
        f"over {report['transport']} for {report['seconds']} s, server {report['server']} "
        f"({report.get('runner', 'emulators')})",
        f"fps p50 {report['fps']['p50']} min {report['fps']['min']}; "
        f"latency ms p50 {report['latency_ms']['p50']} p99 {report['latency_ms']['p99']}; "
        f"mismatches {report['mismatches']}",
        f"process rss {report['server_rss_mb']} MB, cpu {report['server_cpu_percent']} % "
        f"({report['process_note']})",
    ]
    rss = report.get("server_rss_over_run_mb")
    if rss:
        lines.append(
            f"server rss over the run: start {rss['start']} mid {rss['mid']} end {rss['end']} "
            f"peak {rss['peak']} MB"
        )
    lines += [
        "",
        f"bytes/frame on the same {base.get('frames', 0)} frames   (x = size / ours)",
    ]
    rows = [(f"ours ({report.get('mode', 'tiles')})", base.get("tiles"), 1.0)]
    for name in ("raw_full_frame", "zlib_full_frame", "vp8"):
        if base.get(name) is not None:
            rows.append((name, base[name], base.get(f"{name.split('_')[0]}_over_tiles")))
    for name, value, ratio in rows:
        lines.append(f"  {name:<16}{value:>10}  x{ratio}")
    carried = (
        "RTP payload bytes per decoded video frame"
        if report.get("mode") == "video"
        else "bytes/frame"
    )
    lines.append(f"all frames, all clients: {report['bytes_per_frame']} {carried}")
    return "\n".join(lines)


def format_summary(report: dict[str, Any]) -> str:
    """A few human lines for a report."""
    lat = report["latency_ms"]
    lines = [
        f"{report['app']} session {report['session']} as {report['user']} "
        f"({report['role']}) over {report['transport']}: "
        f"{report['width']}x{report['height']}",
        f"frames {report['frames']} (keyframes {report['keyframes']}), "
        f"verified {report['verified']}, mismatches {report['mismatches']}",
        f"moves {report['moves']}, latency ms p50 {lat['p50']} p99 {lat['p99']} max {lat['max']}",
        f"bytes {report['bytes']} ({report['bytes_per_frame']} per frame), "
        f"{report['fps']} fps over {report['seconds']} s",
    ]
    video = report.get("video")
    if video:
        lines.append(
            f"video {video['width']}x{video['height']}: {video['frames']} frames, "
            f"{video['fps']} fps, {video['bytes']} RTP payload bytes "
            f"({video['bytes_per_frame']} per frame)"
        )
    opened = report.get("open")
    if opened:
        lines.append(
            f"opened {opened['name']} ({opened['size']} bytes, {opened['type']}, "
            f"{opened['rights']})"
        )
    inbox = report.get("inbox")
    if inbox:
        lines.append(f"inbox: {len(inbox)} entries delivered while connected")
        lines.extend(
            f"  {item.get('name', '?')} from {item.get('from', '?')} at {item['received_ms']} ms"
            for item in inbox
        )
    return "\n".join(lines)
