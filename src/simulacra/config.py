"""Command-line options that also read ``SIMULACRA_<FLAG>`` from the environment.

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
    """Add ``flag`` whose default comes from ``SIMULACRA_<FLAG>`` when set."""
    env = env_name(flag)
    raw = os.environ.get(env)
    value = type(raw) if raw is not None else default
    parser.add_argument(
        flag, default=value, type=type, help=f"{help} [env {env}, default {default!r}]", **kwargs
    )
