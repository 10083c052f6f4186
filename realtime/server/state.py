"""ServerState: what the app's lifespan builds and every route reads."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from models.base import ModelEntry
from realtime.server.auth import Access, Identity, Scope, model_grant
from realtime.server.codec_threads import CodecThreads
from realtime.server.config import ServerConfig
from realtime.server.ended import Ended
from realtime.server.lease import Lease
from realtime.server.metrics import Metrics
from session.errors import (
    AddressLimit,
    KeyLimit,
    NeedsFrames,
    ServerFull,
    ShuttingDown,
    StreamError,
)
from session.pool import WorkerPool

if TYPE_CHECKING:
    from realtime.server.live_session import LiveSession
    from realtime.server.webrtc import PeerSession
    from realtime.server.worker import ModelWorker

logger = logging.getLogger("realtime.server")

T = TypeVar("T")


class Stream(Protocol):
    """A transport's session, as shutdown sees it."""

    async def close_gracefully(self, cause: StreamError) -> None: ...


class ClientGone(Exception):
    """The client of a session waiting in line went away: its place is given up."""


class Signal:
    """Wakes everyone waiting on it, each time it fires (a broadcast, no value)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    async def wait(self) -> None:
        await self._event.wait()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


@dataclass(slots=True)
class ServerState:
    config: ServerConfig
    registry: Mapping[str, ModelEntry]
    pool: WorkerPool[ModelWorker]
    metrics: Metrics
    access: Access
    decoders: CodecThreads
    """Decode every session's input images: `--decode-threads` of them, what decoding
    may take of the CPUs whatever the clients send."""
    encoders: CodecThreads
    """Encode every session's outputs (and convert them for WebRTC's video encoders)."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once every configured model is loaded and warm."""
    load_error: str | None = None
    peers: dict[str, PeerSession] = field(default_factory=dict)
    """WebRTC sessions by session id, for WHIP's DELETE and WHEP viewers."""
    ended: Ended = field(default_factory=Ended)
    """WebRTC sessions and viewers that ended lately, for their owner's late DELETE."""
    streams: set[Stream] = field(default_factory=set)
    """WebSocket sessions, for shutdown."""
    sessions: dict[str, LiveSession] = field(default_factory=dict)
    """Every open session by id, whatever its transport: for its HTTP resources."""
    draining: bool = False
    sessions_by_key: Counter[str] = field(default_factory=Counter)
    sessions_by_address: Counter[str] = field(default_factory=Counter)
    """Open sessions per client address, for `config.max_sessions_per_address`."""
    waiting: list[object] = field(default_factory=list)
    """Sessions waiting in line for a slot (`admit_in_turn`), first come first."""
    _queue_moved: Signal = field(default_factory=lambda: Signal())

    def authorize(
        self,
        credential: str | None,
        model_id: str | None,
        scope: Scope = Scope.STREAM,
        *,
        in_url: bool = False,
        grant: str | None = None,
    ) -> Identity:
        """Who presents `credential` (a key, or for `Scope.STREAM` a token for `model_id`,
        or for `grant` when one is given; only a token when it came `in_url`), or raise."""
        if grant is None and model_id is not None:
            grant = model_grant(model_id)
        try:
            return self.access.identify(credential, grant, scope, in_url=in_url)
        except StreamError as refusal:
            self.metrics.refusals.labels(refusal.code).inc()
            raise

    async def admit(
        self,
        model_id: str,
        transport: str,
        credential: str | None,
        on_queued: Callable[[int], Awaitable[None]] | None = None,
        *,
        text_input: bool = False,
        credential_in_url: bool = False,
        address: str | None = None,
        client_gone: Callable[[], Awaitable[object]] | None = None,
        grant: str | None = None,
    ) -> Lease:
        """A slot for a new session from the client at `address`, or raise: unauthorized,
        shutting down, key or address limit, unknown model, full.

        When the server is full and `config.queue_timeout_s` is set, wait in line
        for a slot instead, first come first served: `on_queued(position)` is
        awaited on joining and whenever the position changes (1 is next), and
        ServerFull is raised when no slot came within the timeout. `client_gone`
        returns once the client has disconnected: then ClientGone is raised, and the
        place in line given up at once. `grant`: what a token must open, when not the
        model (a fal app: auth.fal_app_grant)."""
        timeout = self.config.queue_timeout_s
        identity = self.authorize(credential, model_id, in_url=credential_in_url, grant=grant)
        applicant = (identity, model_id, address)
        if text_input:
            self._counting_refusals(self._check_text_input, model_id)
        if timeout is None or (self.pool.has_room and not self.waiting):
            return self._counting_refusals(self._take_slot, *applicant, transport)
        ticket = object()
        self.waiting.append(ticket)
        logger.info("a %s session waits in line at %d", transport, len(self.waiting))
        reported = 0
        gone = asyncio.ensure_future(client_gone()) if client_gone is not None else None
        if gone is not None:
            gone.add_done_callback(lambda _: self._queue_moved.fire())
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if gone is not None and gone.done():
                        raise ClientGone
                    self._counting_refusals(self._check, *applicant)
                    position = self.waiting.index(ticket) + 1
                    if position == 1 and self.pool.has_room:
                        return self._counting_refusals(self._take_slot, *applicant, transport)
                    if position != reported and on_queued is not None:
                        reported = position
                        await on_queued(position)
                    await self._queue_moved.wait()
        except TimeoutError:
            self.metrics.refusals.labels(ServerFull.code).inc()
            raise ServerFull(
                f"server full: no session slot came free in {timeout:g} s in the queue;"
                " try again later"
            ) from None
        finally:
            if gone is not None:
                gone.cancel()
            self.waiting.remove(ticket)
            self._queue_moved.fire()

    def _counting_refusals(self, step: Callable[..., T], *args: Any) -> T:
        try:
            return step(*args)
        except StreamError as refusal:
            self.metrics.refusals.labels(refusal.code).inc()
            raise

    def _check(self, identity: Identity, model_id: str, address: str | None) -> None:
        """Every refusal but a full server: shutting down, key or address limit,
        unknown model."""
        limit = self.config.max_sessions_per_key
        if self.draining:
            raise ShuttingDown("the server is shutting down; try again later")
        if limit is not None and self.sessions_by_key[identity.key_id] >= limit:
            raise KeyLimit(
                f"this API key ({identity.key_id}) has its {limit} sessions open; "
                "close one or try again later"
            )
        per_address = self.config.max_sessions_per_address
        if per_address is not None and self.sessions_by_address[address or ""] >= per_address:
            raise AddressLimit(
                f"your address ({address}) has its {per_address} sessions open; "
                "close one or try again later"
            )
        self.pool.check_model(model_id)

    def _check_text_input(self, model_id: str) -> None:
        self.pool.check_model(model_id)
        if not self.registry[model_id].info.text_to_image:
            raise NeedsFrames(
                f"model {model_id!r} makes images from frames only: send frames, or pick a"
                " model that makes them from text",
                field="input",
            )

    def _take_slot(
        self, identity: Identity, model_id: str, address: str | None, transport: str
    ) -> Lease:
        self._check(identity, model_id, address)
        worker = self.pool.admit(model_id)
        self.sessions_by_key[identity.key_id] += 1
        self.sessions_by_address[address or ""] += 1
        meter = self.metrics.meter(model_id, transport)

        def release() -> None:
            self.pool.release(worker)
            self.sessions_by_key[identity.key_id] -= 1
            self.sessions_by_address[address or ""] -= 1
            meter.released()
            self._queue_moved.fire()

        session_id = uuid.uuid4().hex[:12]
        if self.config.instance:
            session_id = f"{self.config.instance}.{session_id}"
        return Lease(
            worker,
            meter,
            self.decoders,
            self.encoders,
            release,
            identity,
            session_id,
            self.sessions,
        )

    async def drain(self, timeout: float) -> None:
        """Graceful shutdown: refuse new sessions, tell every session `closing`, let
        the frames in the models come out and be sent, then close them. Whatever is
        not done after `timeout` seconds is left to be cut off."""
        self.draining = True
        self._queue_moved.fire()  # the sessions waiting in line are refused
        sessions: list[Stream] = [*self.streams, *self.peers.values()]
        if not sessions:
            return
        logger.info("draining %d session(s), at most %.0f s", len(sessions), timeout)
        cause = ShuttingDown("the server is shutting down")
        closing = [asyncio.create_task(s.close_gracefully(cause)) for s in sessions]
        _, late = await asyncio.wait(closing, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            logger.warning("%d session(s) did not finish in %.0f s", len(late), timeout)
