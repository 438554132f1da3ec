"""``simulacra apps``: list the apps and their emulated segments, patch and unpatch them.

::

    simulacra apps [--data DIR] [--json]                      apps, segments, bits, bytes
    simulacra apps patch APP SEGMENT X=Y [X=Y ...] [--data DIR]  new version of the emulator
    simulacra apps unpatch APP SEGMENT [--data DIR]              back to the previous version
    simulacra apps patches APP SEGMENT [--data DIR] [--json]     the versions, oldest first

    patch ─► data/emulators/<app>/<segment>-<key>.v<N>.emu, then <segment>-<key>.json
                                      running server: runner.refresh() sees the .json change

Listing compiles nothing; ``patch`` compiles the segment first if it was never
compiled in that data directory (with a progress bar).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from simulacra.apps import APP_NAMES, get_app
from simulacra.apps.emulation import SegmentStore, segment_summary
from simulacra.config import add_option
from simulacra.errors import ConfigError

__all__ = ["register"]


def _parse_pair(text: str) -> tuple[int, int]:
    x, sep, y = text.partition("=")
    if not sep:
        raise ConfigError(f"patch must look like X=Y, got {text!r}")
    try:
        return int(x.replace("_", ""), 0), int(y.replace("_", ""), 0)
    except ValueError:
        raise ConfigError(f"not integers: {text!r} (use decimal or 0x hex)") from None


def _cmd_list(args: argparse.Namespace) -> int:
    apps: list[dict[str, Any]] = []
    for name in APP_NAMES:
        cls = get_app(name)
        apps.append(
            {
                "name": name,
                "title": cls.title,
                "width": cls.width,
                "height": cls.height,
                "tick_hz": cls.tick_hz,
                "segments": [info.as_dict() for info in segment_summary(cls, args.data)],
            }
        )
    if args.json:
        print(json.dumps({"data": str(args.data), "apps": apps}))
        return 0
    for app in apps:
        print(f"{app['name']}  {app['title']}  {app['width']}x{app['height']}")
        for s in app["segments"]:
            size = f"{s['bytes']:,} B" if s["bytes"] is not None else "not compiled"
            verified = {True: "verified", False: "NOT verified", None: "-"}[s["verified"]]
            patched = f"  patched v{s['version']}" if s["version"] else ""
            print(
                f"  {s['segment']:<14} {s['in_bits']:>2} -> {s['out_bits']:<2} bits  "
                f"{size:>14}  (table {s['packed_bytes']:,} B)  {verified}{patched}"
            )
    return 0


def _store(args: argparse.Namespace) -> SegmentStore:
    store = SegmentStore(get_app(args.app), args.data)
    store.segment(args.segment)  # NotFound with the list of segments, before any work
    return store


def _cmd_patch(args: argparse.Namespace) -> int:
    pairs = dict(_parse_pair(p) for p in args.pairs)
    version = _store(args).patch(args.segment, pairs)
    result = {"app": args.app, "segment": args.segment, "version": version, "patches": len(pairs)}
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.app}:{args.segment} now answers from version {version} ({len(pairs)} patched)"
        )
    return 0


def _cmd_unpatch(args: argparse.Namespace) -> int:
    version = _store(args).unpatch(args.segment)
    if args.json:
        print(json.dumps({"app": args.app, "segment": args.segment, "version": version}))
    else:
        print(f"{args.app}:{args.segment} now answers from version {version}")
    return 0


def _cmd_patches(args: argparse.Namespace) -> int:
    versions = _store(args).versions(args.segment)
    rows = [{"version": v.version, "file": v.file, "patches": v.patches} for v in versions]
    if args.json:
        print(json.dumps({"app": args.app, "segment": args.segment, "versions": rows}))
    elif not rows:
        print(f"{args.app}:{args.segment}: no patches (version 0)")
    else:
        for v in versions:
            pairs = " ".join(f"{x:#x}={y:#x}" for x, y in v.patches)
            print(f"v{v.version}  {pairs}")
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_option(parser, "--data", default="data", type=Path, help="data directory")
    parser.add_argument("--json", action="store_true", help="print JSON")


def register(subparsers: Any) -> None:
    """Add ``simulacra apps ...`` to the top-level parser."""
    apps = subparsers.add_parser("apps", help="list apps and segments; patch their emulators")
    _add_common(apps)
    apps.set_defaults(handler=_cmd_list)
    sub = apps.add_subparsers(dest="apps_command", metavar="APPS_COMMAND")

    for name, handler, help_text in (
        ("patch", _cmd_patch, "override outputs of a segment's emulator (a new version)"),
        ("unpatch", _cmd_unpatch, "drop the newest patch version of a segment"),
        ("patches", _cmd_patches, "list a segment's patch versions"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("app", metavar="APP", help=f"one of {', '.join(APP_NAMES)}")
        p.add_argument("segment", metavar="SEGMENT")
        if name == "patch":
            p.add_argument("pairs", nargs="+", metavar="X=Y", help="decimal or 0x hex")
        _add_common(p)
        p.set_defaults(handler=handler)
