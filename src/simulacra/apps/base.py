"""The App protocol: what the server needs from an emulated application.

::

    InputEvent ─► app.step(state, event) ─► state ─► app.render(state) ─► RGB framebuffer
                        │
                        └─ calls self.segments through a SegmentRunner:
                           reference code, or the compiled emulators (apps run *through* them)

An app declares its program segments (name, in_bits, out_bits, reference
implementation). A ``SegmentRunner`` maps each segment name to a vectorized
callable ``np.ndarray[uint64] -> np.ndarray[uint64]``; the server hands the app
a runner backed by emulators, tests hand it the reference one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = ["Segment", "InputEvent", "SegmentRunner", "reference_runner", "App"]

SegmentFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class Segment:
    """A program segment ``f: in_bits -> out_bits`` the app calls at run time."""

    name: str
    in_bits: int
    out_bits: int
    reference: SegmentFn = field(compare=False, repr=False)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"segment name must be an identifier: {self.name!r}")
        if not 1 <= self.in_bits <= 26:
            raise ValueError(f"segment {self.name}: in_bits must be 1..26, got {self.in_bits}")
        if not 1 <= self.out_bits <= 64:
            raise ValueError(f"segment {self.name}: out_bits must be 1..64, got {self.out_bits}")


@dataclass(frozen=True, slots=True)
class InputEvent:
    """One user input, already validated by the protocol layer."""

    kind: str  # "key" | "pointer" | "select"
    key: str = ""
    x: int = 0
    y: int = 0
    buttons: int = 0


SegmentRunner = Mapping[str, SegmentFn]


def reference_runner(segments: tuple[Segment, ...]) -> dict[str, SegmentFn]:
    """A runner that calls each segment's reference code (tests, baselines)."""
    return {s.name: s.reference for s in segments}


class App(ABC):
    """An application the server runs and streams.

    Subclasses set ``name``, ``title``, ``width``, ``height`` (multiples of 16),
    ``tick_hz`` (0 for apps that only change on input) and ``segments``.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    width: ClassVar[int]
    height: ClassVar[int]
    tick_hz: ClassVar[float] = 0.0
    segments: ClassVar[tuple[Segment, ...]] = ()

    def __init__(self, runner: SegmentRunner | None = None) -> None:
        self.runner: SegmentRunner = (
            runner if runner is not None else reference_runner(type(self).segments)
        )

    @abstractmethod
    def reset(self, seed: int) -> Any:
        """A fresh state; the same seed gives the same run."""

    @abstractmethod
    def step(self, state: Any, event: InputEvent | None) -> Any:
        """Apply one input (or one clock tick when ``event`` is None); return the state."""

    @abstractmethod
    def render(self, state: Any) -> np.ndarray:
        """The framebuffer: a new ``np.uint8`` array of shape (height, width, 3) each call

        (the session keeps it as the picture its viewers hold and diffs the next one
        against it, so it must not change afterwards).
        """
