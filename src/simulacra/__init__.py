"""simulacra: emulate applications with an exact neural codec, stream display deltas."""

__all__ = ["__version__"]

__version__ = "0.1.0"
