"""Emulated applications, looked up by name.

::

    get_app("2048") ─► G2048 (apps/g2048.py)     get_app("sand") ─► Sand (apps/sand.py)
    get_app("viewer") ─► ViewerApp (apps/viewer.py): a shared file's picture, opened
                         by the server for an entry, never picked from APP_NAMES

Each app runs its program segments through a runner: the reference code in
tests, the compiled emulators on the server (``apps/emulation.py``).
"""

from __future__ import annotations

import importlib

from simulacra.apps.base import App
from simulacra.errors import NotFound

__all__ = ["APP_NAMES", "VIEWER_APP", "get_app"]

APP_NAMES: tuple[str, ...] = ("2048", "sand")
VIEWER_APP = "viewer"

# Imported on first use, so asking for one app never pays for the others' start-up.
_MODULES = {
    "2048": ("simulacra.apps.g2048", "G2048"),
    "sand": ("simulacra.apps.sand", "Sand"),
    VIEWER_APP: ("simulacra.apps.viewer", "ViewerApp"),
}


def get_app(name: str) -> type[App]:
    """The App class called ``name``; ``NotFound`` lists the known names otherwise."""
    where = _MODULES.get(name)
    if where is None:
        raise NotFound(f"unknown app {name!r}; known apps: {', '.join(APP_NAMES)}")
    module = importlib.import_module(where[0])
    cls: type[App] = getattr(module, where[1])
    return cls
