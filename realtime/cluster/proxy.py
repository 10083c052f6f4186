"""What runs in Ray Serve's HTTP proxy (it imports `middlewares` from
RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH): a WebSocket whose replica dies gets a close
frame that says so, where the proxy would drop the connection (1006, no reason).
Light on purpose: the proxy imports this module, not the server."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from session.protocol import CloseCode

CALLBACK = f"{__name__}.middlewares"
"""RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH, set where the proxies start."""

REPLICA_LOST = "replica_lost"


def middlewares() -> list[Middleware]:
    return [Middleware(CloseOnReplicaLoss)]


class CloseOnReplicaLoss:
    """Closes with 1012 (service restart) a WebSocket the replica accepted and then
    left without a close: its replica died, and a new session goes to another one."""

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
                await send(
                    {
                        "type": "websocket.close",
                        "code": CloseCode.SERVICE_RESTART,
                        "reason": REPLICA_LOST,
                    }
                )
