"""What runs in Ray Serve's HTTP proxy: routing a session's own requests (WHIP's
DELETE, WHEP, its reference image) to the replica that holds it, and a clear close
for a WebSocket whose replica died. The proxy imports `middlewares` from
RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH and `SessionRouter` as the deployment's
request router. Light on purpose: the proxy imports this module, not the server.

A replica's session ids begin with its replica id and a dot (realtime/server/lease.py).
`SessionHeader` puts the id of the session a request names in its path into the
`x-session-id` header (Serve's session header: `PendingRequest.metadata.session_id`),
and `SessionRouter` sends such a request to that replica; any other request, or one
whose replica is gone (which answers 404, as for any session it does not hold), is
routed as Serve's default router would (power of two choices), among the replicas with
a free session slot. Serve counts a replica's ongoing requests, so its WebSockets, but
not its WebRTC sessions (whose requests end with the answer): each replica reports its
free slots in its routing stats (`Replica.record_routing_stats`, every second), and only
when none has one does a request go to a full replica (which refuses it, 503, or puts a
WebSocket in its waiting line).
"""

from __future__ import annotations

import random
import re

from ray.serve._private.request_router.pow_2_router import PowerOfTwoChoicesRequestRouter
from ray.serve.request_router import PendingRequest, RunningReplica
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from session.protocol import CloseCode

CALLBACK = f"{__name__}.middlewares"
"""RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH, set where the proxies start."""
ROUTER = f"{__name__}.SessionRouter"

FREE_SESSIONS = "free_sessions"
REPLICA_LOST = "replica_lost"
SESSION_HEADER = b"x-session-id"
SESSION_PATH = re.compile(r"^/v1/(?:wh[ie]p|sessions)/([^/]+)")


def middlewares() -> list[Middleware]:
    return [Middleware(SessionHeader), Middleware(CloseOnReplicaLoss)]


def replica_of(session_id: str) -> str | None:
    replica, dot, _ = session_id.partition(".")
    return replica if dot else None


class SessionRouter(PowerOfTwoChoicesRequestRouter):
    """A request for a session goes to the replica that holds it; any other, to a
    replica with a free session slot if there is one."""

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        replica = pending_request and replica_of(pending_request.metadata.session_id)
        owner = [r for r in candidate_replicas if r.replica_id.unique_id == replica]
        if owner:
            return [owner]
        with_room = [r for r in candidate_replicas if r.routing_stats.get(FREE_SESSIONS, 1) > 0]
        if with_room and len(with_room) < len(candidate_replicas):
            # Two of them, whose queues Serve then compares (its own choice draws from
            # all replicas, whatever the candidates).
            return [random.sample(with_room, min(2, len(with_room)))]
        chosen: list[list[RunningReplica]] = await super().choose_replicas(
            candidate_replicas, pending_request
        )
        return chosen


class SessionHeader:
    """`x-session-id`: the session a WHIP or WHEP path names (none for other paths: a
    client's own is dropped, so that it cannot pin its requests to a replica)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != SESSION_HEADER]
            named = SESSION_PATH.match(scope["path"])
            if named:
                headers.append((SESSION_HEADER, named.group(1).encode()))
            scope = {**scope, "headers": headers}
        await self._app(scope, receive, send)


class CloseOnReplicaLoss:
    """Closes with 1012 (service restart) a WebSocket the replica accepted and then
    left without a close: its replica died (the proxy would drop the connection: 1006,
    no reason), and a new session goes to another one."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self._app(scope, receive, send)
            return
        open_ = False

        async def watched_receive() -> Message:
            nonlocal open_
            message = await receive()
            if message["type"] == "websocket.disconnect":
                open_ = False
            return message

        async def watched_send(message: Message) -> None:
            nonlocal open_
            if message["type"] == "websocket.accept":
                open_ = True
            elif message["type"] == "websocket.close":
                open_ = False
            await send(message)

        try:
            await self._app(scope, watched_receive, watched_send)
        finally:
            if open_:
                close = {"code": CloseCode.SERVICE_RESTART, "reason": REPLICA_LOST}
                await send({"type": "websocket.close", **close})
