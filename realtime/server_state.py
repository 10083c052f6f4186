"""ServerState: what the app's lifespan builds and every route reads."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from models.base import ModelEntry
from realtime.auth import Access, Identity
from realtime.config import ServerConfig
from realtime.metrics import Metrics, SessionMeter
from session.errors import KeyLimit, ShuttingDown, StreamError
from session.pool import WorkerPool
from session.worker import ModelWorker

if TYPE_CHECKING:
    from realtime.webrtc import PeerSession

logger = logging.getLogger("realtime.server")


class Stream(Protocol):
    """A transport's session, as shutdown sees it."""

    async def close_gracefully(self, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Lease:
    """A session's slot: the worker it is pinned to and its meter, until `release`."""

    worker: ModelWorker
    meter: SessionMeter
    release: Callable[[], None]


@dataclass(slots=True)
class ServerState:
    config: ServerConfig
    registry: Mapping[str, ModelEntry]
    pool: WorkerPool
    metrics: Metrics
    access: Access
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once every configured model is loaded and warm."""
    load_error: str | None = None
    peers: dict[str, PeerSession] = field(default_factory=dict)
    """WebRTC sessions by session id, for WHIP's DELETE and WHEP viewers."""
    streams: set[Stream] = field(default_factory=set)
    """WebSocket sessions, for shutdown."""
    draining: bool = False
    sessions_by_key: Counter[str] = field(default_factory=Counter)

    def authorize(self, credential: str | None, model_id: str | None) -> Identity:
        """Who presents `credential` (a key, or a token for `model_id`), or raise."""
        try:
            return self.access.identify(credential, model_id)
        except StreamError as refusal:
            self.metrics.refusals.labels(refusal.code).inc()
            raise

    def admit(self, model_id: str, transport: str, credential: str | None) -> Lease:
        """A slot for a new session, or raise: unauthorized, shutting down, key limit,
        unknown model, full."""
        identity = self.authorize(credential, model_id)
        limit = self.config.max_sessions_per_key
        try:
            if self.draining:
                raise ShuttingDown("the server is shutting down; try again later")
            if limit is not None and self.sessions_by_key[identity.key_id] >= limit:
                raise KeyLimit(
                    f"this API key ({identity.key_id}) has its {limit} sessions open; "
                    "close one or try again later"
                )
            worker = self.pool.admit(model_id)
        except StreamError as refusal:
            self.metrics.refusals.labels(refusal.code).inc()
            raise
        self.sessions_by_key[identity.key_id] += 1
        meter = self.metrics.meter(model_id, transport)

        def release() -> None:
            self.pool.release(worker)
            self.sessions_by_key[identity.key_id] -= 1
            meter.released()

        return Lease(worker, meter, release)

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
