"""One entry point, ``simulacra``, with subcommands.

Each area registers its own subcommands through a ``register(subparsers)``
function, so this file stays a dispatcher::

    simulacra serve | users        simulacra.server.cli
    simulacra client | bench       simulacra.client.cli
    simulacra emu                  simulacra.codecs.emulator.cli
    simulacra apps                 simulacra.apps.cli
    simulacra files                simulacra.codecs.files.cli

A subcommand's handler returns an exit code. A ``SimulacraError`` (or an
``OSError``) becomes one line on stderr (or an ``error`` object with
``--json``) and exit status 1.
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
        return _report(args, type(exc).__name__, str(exc))
    except OSError as exc:
        # A disk or network failure nobody wrapped: still one line, never a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        return _report(args, "OSError", f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        return 130


def _report(args: argparse.Namespace, kind: str, message: str) -> int:
    """Print one error line (an ``error`` object with ``--json``); the exit status."""
    if getattr(args, "json", False):
        print(json.dumps({"error": {"type": kind, "message": message}}))
    else:
        print(f"simulacra: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
