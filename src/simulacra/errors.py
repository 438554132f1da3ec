"""Every error simulacra raises derives from one root.

::

    SimulacraError
    ├── ProtocolError            a peer sent bytes that are not a valid message
    │   ├── PayloadTooBig        a message, buffer or upload is past its size limit
    │   ├── UnsupportedVersion   a peer speaks another protocol version
    │   └── InvalidState         a message or call is not allowed in the current state
    ├── CodecError               an encoder or decoder cannot do what it was asked
    │   └── CorruptArtifact      a stored artifact (.emu, blob, cache) fails its checks
    ├── Unauthorized             missing or wrong token, or a role without the right
    │   └── Forbidden            authenticated, but not allowed to do this
    ├── CodeError                a regeneration code cannot be redeemed
    │   ├── CodeExpired          past its expiry, or used up
    │   ├── CodeRevoked          revoked by its owner
    │   └── RateLimited          too many failed attempts
    ├── NotFound                 no such user, file, entry, app or segment
    ├── ConfigError              bad flag, environment variable or data directory
    └── TransportError           a connection failed or went away

A user sees ``str(error)``: one clear line, never a traceback.
"""

from __future__ import annotations

__all__ = [
    "SimulacraError",
    "ProtocolError",
    "PayloadTooBig",
    "UnsupportedVersion",
    "InvalidState",
    "CodecError",
    "CorruptArtifact",
    "Unauthorized",
    "Forbidden",
    "CodeError",
    "CodeExpired",
    "CodeRevoked",
    "RateLimited",
    "NotFound",
    "ConfigError",
    "TransportError",
]


class SimulacraError(Exception):
    """Root of every error simulacra raises on purpose."""


class ProtocolError(SimulacraError):
    """A peer sent bytes that do not form a valid message."""


class PayloadTooBig(ProtocolError):
    """A message, buffer or upload is larger than its limit."""


class UnsupportedVersion(ProtocolError):
    """A peer speaks a protocol version this build does not."""


class InvalidState(ProtocolError):
    """A message or call is not allowed in the current state."""


class CodecError(SimulacraError):
    """An encoder or decoder cannot do what it was asked."""


class CorruptArtifact(CodecError):
    """A stored artifact fails its magic, version, length or checksum checks."""


class Unauthorized(SimulacraError):
    """Missing or wrong credentials."""


class Forbidden(Unauthorized):
    """Authenticated, but the role or rights do not allow this."""


class CodeError(SimulacraError):
    """A regeneration code cannot be redeemed (unknown, or not for this user)."""


class CodeExpired(CodeError):
    """The code is past its expiry or has no uses left."""


class CodeRevoked(CodeError):
    """The code was revoked by its owner."""


class RateLimited(CodeError):
    """Too many failed attempts; try again later."""


class NotFound(SimulacraError):
    """No such user, file, entry, app or segment."""


class ConfigError(SimulacraError):
    """A flag, environment variable or data directory is unusable."""


class TransportError(SimulacraError):
    """A connection could not be made or went away."""
