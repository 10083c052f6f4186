"""Lease: a session's slot on the server, from admission until release."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from realtime.server.auth import Identity
from realtime.server.codec_threads import CodecThreads
from realtime.server.metrics import SessionMeter
from realtime.server.worker import ModelWorker

if TYPE_CHECKING:
    from realtime.server.live_session import LiveSession


@dataclass(frozen=True, slots=True)
class Lease:
    """A session's slot: the worker it is pinned to, the server's codec threads and the
    session's meter, until `release`; `owner`, who opened it, is the only one who may
    act on it (watch it, end it)."""

    worker: ModelWorker
    meter: SessionMeter
    decoders: CodecThreads
    encoders: CodecThreads
    release: Callable[[], None]
    owner: Identity
    session_id: str
    """Unique on the server; a cluster replica's begin with its instance name and a dot,
    so that the Serve proxy can route a session's WHIP/WHEP requests to its replica
    (realtime/cluster/proxy.py)."""
    sessions: dict[str, LiveSession]
    """The server's open sessions by id (ServerState.sessions): the session enters it
    once created and leaves it when it closes."""
