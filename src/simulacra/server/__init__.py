"""The simulacra server: static client, signaling, WebRTC peers, app sessions, store.

::

    from simulacra.server import Server, ServerConfig
    async with Server(ServerConfig(port=0, data_dir=path)) as srv:
        srv.url, srv.admin_token, srv.add_user("bob", role="view"), srv.peer_count
"""

from __future__ import annotations

from simulacra.server.config import ServerConfig
from simulacra.server.server import Server

__all__ = ["Server", "ServerConfig"]
