"""simulacra.client: the headless client and the load runner.

::

    ClientOptions ─► HeadlessClient.run() ─► transports (webrtc | ws) ─► report dict

Names load on first use, so ``simulacra`` subcommands that never connect do not
pay for importing aiortc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulacra.client.headless import ClientOptions, HeadlessClient

__all__ = ["ClientOptions", "HeadlessClient"]

_LAZY = {
    "ClientOptions": "simulacra.client.headless",
    "HeadlessClient": "simulacra.client.headless",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simulacra.client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
