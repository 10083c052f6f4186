"""BenchConfig: what a `realtime bench` run asks for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TRANSPORTS = ("websocket", "webrtc")


@dataclass(frozen=True, slots=True)
class BenchConfig:
    url: str
    """The server's http(s) URL."""
    sessions: int = 1
    fps: float = 30.0
    """Each camera's frame rate; 0: send back to back, as fast as the socket takes
    them (WebSocket only)."""
    width: int = 512
    height: int = 512
    quality: int = 80
    """JPEG quality of the WebSocket camera's frames (WebRTC's video encoder sets its own)."""
    duration_s: float = 10.0
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    transport: str = "websocket"
    api_key: str | None = None
    warmup_s: float = 0.0
    """Seconds the cameras stream before the measuring window opens."""


def check_config(config: BenchConfig) -> None:
    if config.transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
    if config.sessions < 1:
        raise ValueError("sessions must be at least 1")
    if config.fps < 0 or (config.fps == 0 and config.transport == "webrtc"):
        raise ValueError("fps must be more than 0 (0, back to back, is WebSocket only)")
    if config.duration_s <= 0:
        raise ValueError("duration must be more than 0")
    if config.warmup_s < 0:
        raise ValueError("warm-up must be 0 or more")
