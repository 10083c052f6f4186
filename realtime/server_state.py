"""ServerState: what the app's lifespan builds and every route reads."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from models.base import ModelEntry
from realtime.config import ServerConfig
from session.pool import WorkerPool

if TYPE_CHECKING:
    from realtime.webrtc import PeerSession


@dataclass(slots=True)
class ServerState:
    config: ServerConfig
    registry: Mapping[str, ModelEntry]
    pool: WorkerPool
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once every configured model is loaded and warm."""
    load_error: str | None = None
    peers: dict[str, PeerSession] = field(default_factory=dict)
    """WebRTC sessions by session id, for WHIP's DELETE and WHEP viewers."""
