"""ServerConfig: every setting of a running server, as the CLI or a test gives them;
Listen: where and how it listens (what uvicorn needs beyond the app)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from models.registry import DEFAULT_MODEL
from realtime.ice import IceServer
from realtime.server.origins import LOOPBACK_NAMES
from session.limits import SessionLimits


@dataclass(frozen=True, slots=True)
class ServerConfig:
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    """Models loaded and warmed at start; the first is served when a client names none."""
    devices: tuple[str, ...] = ("auto",)
    """Where models run: a worker per device for each model (times `workers_per_model`);
    "auto" is every CUDA device, else the CPU (models.loading.resolve_devices)."""
    max_sessions: int = 8
    """Sessions admitted at once, over all models; one more is refused with close 1013,
    or waits in line when `queue_timeout_s` is set."""
    queue_timeout_s: float | None = None
    """How long a session may wait in line for a slot when the server is full. None: no
    line, refuse at once."""
    max_message_bytes: int = 8 * 2**20
    """Largest WebSocket message accepted; a larger one closes the session with 1009."""
    max_body_bytes: int = 64 * 2**10
    """Largest HTTP request body read (an SDP offer is a few KB); a larger one is
    refused with 413 `too_large` as soon as it passes this, unread beyond."""
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
    max_sessions_per_address: int | None = None
    """Sessions one client address may hold at once (for open servers, where keys do not
    tell clients apart); one more is refused with close 1013 / HTTP 429. None: no limit."""
    token_secret: bytes | None = None
    """Signs tokens; give every instance behind one load balancer the same. None: random."""
    max_token_ttl_s: float = 3600.0
    cors_origins: tuple[str, ...] = ()
    """Other sites' origins (`https://app.example.com`, or `*`) whose pages get CORS
    grants and may use a server with no API key (realtime/server/origins.py); its own
    pages always may."""
    allowed_hosts: tuple[str, ...] | None = LOOPBACK_NAMES
    """`Host` names a server with no API key answers (DNS rebinding): localhost names
    for a loopback bind, None (any) for another; see `origins.allowed_hosts`."""
    ice_addresses: tuple[str, ...] = ()
    """Addresses to offer as WebRTC host candidates; none: every interface but loopback
    (`realtime serve` adds loopback on a loopback --host: realtime/ice.py)."""
    max_viewers: int = 4
    """WHEP viewers of one session at once; one more is refused with viewer_limit (429)."""
    connect_timeout_s: float = 30.0
    """A WebRTC peer (a session or a WHEP viewer) that has not connected by then is given
    up: a session frees its slot, a viewer its sockets."""
    fal_apps: Mapping[str, str] = field(default_factory=dict)
    """fal app ids (owner/alias[/subpath]) and the served model each runs, over the
    default table (realtime/server/fal.py, docs/fal.md)."""
    limits: SessionLimits = field(default_factory=SessionLimits)
    """What each session may send, and for how long (session/limits.py)."""
    instance: str = ""
    """This server's name among several serving one address (a Ray Serve replica's id:
    realtime/cluster/replica.py), prefixed to its workers' names, so that `ready`, /healthz and
    /metrics say which instance holds a session. Empty: a lone server."""

    @property
    def default_model(self) -> str:
        return self.models[0]


@dataclass(frozen=True, slots=True)
class Listen:
    """Where and how the server listens: what uvicorn needs beyond the app."""

    host: str = "127.0.0.1"
    port: int = 8000
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    log_level: str = "info"
    shutdown_timeout_s: float = 10.0
    limit_concurrency: int | None = 1000
    """Connections (HTTP and WebSocket) and tasks at once past which uvicorn answers new
    HTTP requests 503; keep it under the process's open-file limit. None: no limit."""
    timeout_keep_alive_s: int = 5
    """An HTTP connection idle this long between requests is closed."""
    header_timeout_s: float = 10.0
    """A connection whose request headers are not complete this long after it opened
    (or after its last response) is closed: uvicorn has no such timeout."""

    def bind(self) -> socket.socket:
        """The listening socket, bound now (uvicorn listens on it): OSError when the
        address is taken or not this host's."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listening = socket.socket(family)
        try:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listening.bind((self.host, self.port))
        except OSError:
            listening.close()
            raise
        return listening
