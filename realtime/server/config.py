"""ServerConfig: every setting of a running server, as the CLI or a test gives them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from models.registry import DEFAULT_MODEL
from realtime.ice import IceServer
from session.limits import SessionLimits


@dataclass(frozen=True, slots=True)
class ServerConfig:
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    """Models loaded and warmed at start; the first is served when a client names none."""
    device: str = "auto"
    max_sessions: int = 8
    """Sessions admitted at once, over all models; one more is refused with close 1013,
    or waits in line when `queue_timeout_s` is set."""
    queue_timeout_s: float | None = None
    """How long a session may wait in line for a slot when the server is full. None: no
    line, refuse at once."""
    max_message_bytes: int = 8 * 2**20
    """Largest WebSocket message accepted; a larger one closes the session with 1009."""
    workers_per_model: int = 1
    max_batch: int = 8
    """Most sessions' frames a worker runs through its model in one call."""
    decode_threads: int = min(4, os.cpu_count() or 1)
    """Threads decoding input images, shared by every session (each decodes one image
    at a time): what decoding may take of the CPUs, whatever the clients send."""
    ice_servers: tuple[IceServer, ...] = ()
    """STUN/TURN servers for WebRTC peers; none: host candidates only."""
    api_keys: tuple[str, ...] = ()
    """Keys accepted as `Authorization: Bearer KEY`; none: the server is open to all."""
    max_sessions_per_key: int | None = None
    token_secret: bytes | None = None
    """Signs tokens; give every instance behind one load balancer the same. None: random."""
    max_token_ttl_s: float = 3600.0
    ice_addresses: tuple[str, ...] = ()
    """Addresses to offer as WebRTC host candidates; none: every interface but loopback."""
    limits: SessionLimits = field(default_factory=SessionLimits)
    """What each session may send, and for how long (session/limits.py)."""

    @property
    def default_model(self) -> str:
        return self.models[0]
