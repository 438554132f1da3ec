"""One entry point, ``simulacra``, with subcommands.

Each area registers its own subcommands through a ``register(subparsers)``
function, so this file stays a dispatcher::

    simulacra serve | users        simulacra.server.cli
    simulacra client | bench       simulacra.client.cli
    simulacra emu                  simulacra.codecs.emulator.cli
    simulacra apps                 simulacra.apps.cli
    simulacra files                simulacra.codecs.files.cli

A subcommand's handler returns an exit code. A ``SimulacraError`` becomes one
line on stderr (or an ``error`` object with ``--json``) and exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from simulacra import __version__
from simulacra.errors import SimulacraError

__all__ = ["main", "build_parser"]

_AREAS = (
    "simulacra.server.cli",
    "simulacra.client.cli",
    "simulacra.codecs.emulator.cli",
    "simulacra.apps.cli",
    "simulacra.codecs.files.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simulacra",
        description="Emulate applications with exact neural emulators and stream them to thin "
        "clients as display deltas; share files by regeneration code.",
    )
    parser.add_argument("--version", action="version", version=f"simulacra {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for area in _AREAS:
        try:
            module = importlib.import_module(area)
        except ModuleNotFoundError as exc:
            # An area that is not built yet simply adds no subcommands.
            if exc.name and area.startswith(exc.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except SimulacraError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}))
        else:
            print(f"simulacra: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
