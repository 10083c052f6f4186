"""ServerState: what the app's lifespan builds and every route reads."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from models.base import ModelEntry
from realtime.config import ServerConfig
from realtime.metrics import Metrics
from session.errors import ShuttingDown, StreamError
from session.pool import WorkerPool
from session.worker import ModelWorker

if TYPE_CHECKING:
    from realtime.webrtc import PeerSession

logger = logging.getLogger("realtime.server")


class Stream(Protocol):
    """A transport's session, as shutdown sees it."""

    async def close_gracefully(self, reason: str) -> None: ...


@dataclass(slots=True)
class ServerState:
    config: ServerConfig
    registry: Mapping[str, ModelEntry]
    pool: WorkerPool
    metrics: Metrics
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once every configured model is loaded and warm."""
    load_error: str | None = None
    peers: dict[str, PeerSession] = field(default_factory=dict)
    """WebRTC sessions by session id, for WHIP's DELETE and WHEP viewers."""
    streams: set[Stream] = field(default_factory=set)
    """WebSocket sessions, for shutdown."""
    draining: bool = False

    def admit(self, model_id: str) -> ModelWorker:
        """A worker for a new session, or raise: shutting down, unknown model, full."""
        try:
            if self.draining:
                raise ShuttingDown("the server is shutting down; try again later")
            return self.pool.admit(model_id)
        except StreamError as refusal:
            self.metrics.refusals.labels(refusal.code).inc()
            raise

    async def drain(self, timeout: float) -> None:
        """Graceful shutdown: refuse new sessions, tell every session `closing`, let
        the frames in the models come out and be sent, then close them. Whatever is
        not done after `timeout` seconds is left to be cut off."""
        self.draining = True
        sessions: list[Stream] = [*self.streams, *self.peers.values()]
        if not sessions:
            return
        logger.info("draining %d session(s), at most %.0f s", len(sessions), timeout)
        reason = "the server is shutting down"
        closing = [asyncio.create_task(s.close_gracefully(reason)) for s in sessions]
        _, late = await asyncio.wait(closing, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            logger.warning("%d session(s) did not finish in %.0f s", len(late), timeout)
