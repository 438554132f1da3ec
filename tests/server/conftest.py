"""Server test fixtures; also makes ``server_testkit`` importable.

``--import-mode=importlib`` puts no test dir on sys.path, hence the insert below.

Compiling 2048's emulators takes 10-70 s (measured: 8.6 s idle, 69 s on a loaded
2-core machine), so tests of the emulated path share the run's one compile
(``compiled_emulators``, tests/conftest.py), copied into each test's data
directory; the server then loads them at once, as on any later start. Other
tests run apps on reference code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def data_dir(tmp_path: Path, compiled_emulators: Any) -> Path:
    """A fresh data directory with 2048's compiled emulators already in place."""
    return compiled_emulators.copy_into(tmp_path, "2048")
