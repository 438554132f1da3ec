"""Looking apps up by name."""

from __future__ import annotations

import pytest

from simulacra.apps import APP_NAMES, get_app
from simulacra.apps.base import App
from simulacra.errors import NotFound


def test_known_apps() -> None:
    assert APP_NAMES == ("2048", "sand")
    for name in APP_NAMES:
        cls = get_app(name)
        assert issubclass(cls, App) and cls.name == name
        assert cls.width % 16 == 0 and cls.height % 16 == 0
        assert cls.segments


def test_unknown_app_lists_known_ones() -> None:
    with pytest.raises(NotFound, match=r"unknown app 'tetris'; known apps: 2048, sand"):
        get_app("tetris")
