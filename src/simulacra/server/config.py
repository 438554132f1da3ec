"""Settings of one server process.

Every knob has a default that works on one machine with nothing else running;
the CLI maps flags and ``SIMULACRA_*`` variables onto these fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from simulacra.errors import ConfigError
from simulacra.protocol.ice import MAX_ICE_SERVERS, ice_url_problem, is_turn_url

__all__ = ["ServerConfig", "MIN_TURN_TTL"]

MIN_TURN_TTL = 60.0  # seconds


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What to serve, where, and the limits that keep one bad client cheap."""

    host: str = "127.0.0.1"
    port: int = 8080  # 0 picks a free port; Server.url then shows the real one
    data_dir: Path = Path("data")
    app: str = "2048"  # the app a Hello with app="" gets
    hello_timeout: float = 10.0  # seconds a connection may stay silent before Hello
    # Unacknowledged frames in flight per viewer: 8 (~270 ms at 30 Hz) rides out a
    # scheduler stall on a loaded machine without splitting the viewer off its group.
    frame_window: int = 8
    # Viewers of one session that drifted into separate encoder groups are merged
    # by keyframe at most every regroup_interval seconds, while those keyframes
    # cost at most regroup_budget of the frame bytes sent (sessions.AppSession._regroup).
    regroup_interval: float = 1.0
    regroup_budget: float = 0.02
    max_send_buffer: int = 4 * 1024 * 1024  # transport bytes queued before frames are skipped
    max_pending_messages: int = 1024  # queued, unprocessed messages per connection
    max_sessions: int = 256  # app sessions kept in memory, idle ones are evicted first
    dictionary_slots: int = 4096  # tile dictionary size offered in Welcome
    tile_cache_entries: int = 65536  # shared TileEncodeCache bound
    reference: bool = False  # run apps on their reference code instead of the emulators
    progress: bool = False  # progress bars (stderr) while compiling emulators
    compile_wait: float = 120.0  # seconds a Hello may wait for its app's emulators to compile
    refresh_interval: float = 1.0  # seconds between checks for patched emulators
    mqtt: str | None = None  # None: embedded broker on loopback; "off": no MQTT; else mqtt://…
    node: str = ""  # node name in MQTT topics; "" = <hostname>-<pid>
    # STUN/TURN URLs handed to every WebRTC peer (ours too); () = host candidates only.
    ice_servers: tuple[str, ...] = ()
    # coturn's static-auth-secret: TURN credentials are minted from it per connection.
    turn_secret: str = field(default="", repr=False)
    turn_ttl: float = 3600.0  # seconds a minted TURN credential stays valid

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
        if not self.host:
            raise ConfigError("host must not be empty")
        if self.hello_timeout <= 0:
            raise ConfigError(f"hello_timeout must be positive, got {self.hello_timeout}")
        if self.compile_wait <= 0 or self.refresh_interval <= 0:
            raise ConfigError("compile_wait and refresh_interval must be positive")
        if self.frame_window < 1:
            raise ConfigError(f"frame_window must be >= 1, got {self.frame_window}")
        if self.regroup_interval < 0 or not 0 <= self.regroup_budget <= 1:
            raise ConfigError("regroup_interval must be >= 0 and regroup_budget in 0..1")
        self._check_ice()
        if not isinstance(self.data_dir, Path):
            object.__setattr__(self, "data_dir", Path(self.data_dir))

    def _check_ice(self) -> None:
        if not isinstance(self.ice_servers, tuple):
            object.__setattr__(self, "ice_servers", tuple(self.ice_servers))
        if len(self.ice_servers) > MAX_ICE_SERVERS:
            raise ConfigError(f"at most {MAX_ICE_SERVERS} ICE servers, got {len(self.ice_servers)}")
        for url in self.ice_servers:
            problem = ice_url_problem(url)
            if problem is not None:
                raise ConfigError(problem)
        if not self.turn_secret and any(is_turn_url(url) for url in self.ice_servers):
            raise ConfigError("a turn: or turns: ICE server needs turn_secret to mint credentials")
        if not MIN_TURN_TTL <= self.turn_ttl < math.inf:
            # Shorter and a credential could expire between minting and the TURN allocation.
            raise ConfigError(
                f"turn_ttl must be {MIN_TURN_TTL:g} s or more (finite), got {self.turn_ttl}"
            )
