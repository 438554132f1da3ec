"""Command-line options that also read ``SIMULACRA_<FLAG>`` from the environment.

::

    --port 9000  ─┐
    SIMULACRA_PORT=9000 ─┼─► first one set wins ─► type(text) ─► args.port
    default 8080 ─┘          (a bad value: one usage line naming flag or variable)

A flag given on the command line wins over the environment; the environment wins
over the built-in default, which always works on one machine with nothing else.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_option", "env_name", "default_data_dir"]


def env_name(flag: str) -> str:
    """``--data-dir`` -> ``SIMULACRA_DATA_DIR``."""
    return "SIMULACRA_" + flag.lstrip("-").replace("-", "_").upper()


def default_data_dir() -> Path:
    return Path(os.environ.get("SIMULACRA_DATA", "data"))


def add_option(
    parser: argparse.ArgumentParser,
    flag: str,
    *,
    default: Any = None,
    type: Callable[[str], Any] = str,
    help: str = "",
    **kwargs: Any,
) -> None:
    """Add ``flag`` whose default comes from ``SIMULACRA_<FLAG>`` when set.

    The environment's text is converted by argparse, and only when this parser
    runs: a bad value is one usage line naming the variable, never a traceback,
    and never breaks the other subcommands.
    """
    env = env_name(flag)
    raw = os.environ.get(env)

    choices = kwargs.get("choices")

    def convert(text: str) -> Any:
        try:
            value = type(text)
        except argparse.ArgumentTypeError as exc:
            if raw is None or text != raw:
                raise
            raise argparse.ArgumentTypeError(f"{exc} (from {env})") from None
        except (ValueError, TypeError) as exc:
            where = f" (from {env})" if raw is not None and text == raw else ""
            raise argparse.ArgumentTypeError(f"invalid value {text!r}{where}: {exc}") from None
        # argparse checks choices of flags given, not of defaults: check the environment's.
        if choices is not None and raw is not None and text == raw and value not in choices:
            allowed = ", ".join(map(str, choices))
            raise argparse.ArgumentTypeError(f"{text!r} (from {env}) is not one of {allowed}")
        return value

    convert.__name__ = getattr(type, "__name__", "value")
    parser.add_argument(
        flag,
        default=raw if raw is not None else default,
        type=convert,
        help=f"{help} [env {env}, default {default!r}]",
        **kwargs,
    )
