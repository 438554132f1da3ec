"""Server test fixtures; also makes ``server_testkit`` importable.

``--import-mode=importlib`` puts no test dir on sys.path, hence the insert below.

Compiling 2048's emulators takes 10-70 s (measured: 8.6 s idle, 69 s on a loaded
2-core machine), so tests of the emulated path share one compile per test
session, copied into each test's data directory; the server then loads them at
once, as on any later start. Other tests run apps on reference code.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(scope="session")
def emulator_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose ``emulators/`` holds 2048's compiled segments."""
    from simulacra.apps import get_app
    from simulacra.apps.emulation import load_or_compile_segments

    root = tmp_path_factory.mktemp("emulator-cache")
    load_or_compile_segments(get_app("2048"), root, progress=False)
    return root


@pytest.fixture
def data_dir(tmp_path: Path, emulator_cache: Path) -> Path:
    """A fresh data directory with the compiled emulators already in place."""
    shutil.copytree(emulator_cache / "emulators", tmp_path / "emulators")
    return tmp_path
