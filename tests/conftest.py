"""Fixtures every test package shares: the apps' emulators, compiled once per run.

::

    compiled_emulators (session scope)
        .root(app, ...)  ─► first call per app: load_or_compile_segments(app, root)
                           (2048: 10-70 s on 2 busy cores; sand: seconds), later calls: free
        .copy_into(data_dir, app, ...) ─► root/emulators/<app>/ copied to data_dir/emulators/<app>/
                           a server started on data_dir then loads them at once

Tests that run apps through their emulators (server, web, end-to-end, apps)
ask this fixture instead of compiling, so each app's segments compile at most
once per ``make test``. A test may patch or rewrite what it copied; the shared
root is never handed out for writing.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

COMPILED_APPS = ("2048", "sand")


class CompiledEmulators:
    """One directory holding the compiled emulators of the apps asked for so far."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._compiled: set[str] = set()
        self._lock = threading.Lock()  # a test may ask from a worker thread

    def root(self, *apps: str) -> Path:
        """A data directory whose ``emulators/`` holds ``apps`` (default: 2048 and sand).

        Read-only by convention: copy with ``copy_into`` before starting a server on it.
        """
        from simulacra.apps import get_app
        from simulacra.apps.emulation import load_or_compile_segments

        with self._lock:
            for app in apps or COMPILED_APPS:
                if app not in self._compiled:
                    load_or_compile_segments(get_app(app), self._root, progress=False)
                    self._compiled.add(app)
        return self._root

    def copy_into(self, data_dir: Path, *apps: str) -> Path:
        """Copy the emulators of ``apps`` (default: 2048 and sand) into ``data_dir``; return it."""
        root = self.root(*apps)
        for app in apps or COMPILED_APPS:
            shutil.copytree(
                root / "emulators" / app, data_dir / "emulators" / app, dirs_exist_ok=True
            )
        return data_dir


@pytest.fixture(scope="session")
def compiled_emulators(tmp_path_factory: pytest.TempPathFactory) -> CompiledEmulators:
    """The session's shared emulator compiles (each app compiled on first use)."""
    return CompiledEmulators(tmp_path_factory.mktemp("compiled-emulators"))
