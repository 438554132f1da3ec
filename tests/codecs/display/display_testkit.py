"""Shared helpers of the display codec tests."""

from __future__ import annotations

import numpy as np

__all__ = ["pattern_tile"]


def pattern_tile(pattern: int) -> np.ndarray:
    """A deterministic 16x16 tile: solid, few-colour, many-colour or noise."""
    rng = np.random.default_rng(pattern)
    kind = pattern % 4
    if kind == 0:
        return np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (16, 16, 3)).copy()
    if kind == 1:
        return rng.integers(0, 3, (16, 16, 3), dtype=np.uint8) * 100
    if kind == 2:
        return np.repeat(rng.integers(0, 256, (16, 1, 3), dtype=np.uint8), 16, axis=1)
    return rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
