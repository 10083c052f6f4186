"""The native WebSocket transport: protocol v1 (docs/protocol.md) over a LiveSession.

Two loops per connection: one reads messages and feeds them in, one waits for
outputs and sends them. A lock keeps each output's metadata and image adjacent.
Both loops await the socket, so a client that stops reading stops the sender
(its outputs are then replaced in the slot, and counted) and a client that
sends faster than we read is held back by TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from realtime.server.auth import credential_of
from realtime.server.live_session import LiveSession
from realtime.server.state import ClientGone, ServerState
from session.errors import (
    BadMessage,
    StreamError,
)
from session.protocol import CLOSE_CODES, CloseCode, Queued, close_code
from session.session import Message, Output

logger = logging.getLogger("realtime.server.websocket")


async def stream_endpoint(websocket: WebSocket) -> None:
    """GET /v1/stream?model=ID"""
    server: ServerState = websocket.app.state.server
    model_id = websocket.query_params.get("model", server.config.default_model)
    await websocket.accept()
    credential, in_url = websocket_credential(websocket, "token")

    async def report_position(position: int) -> None:
        await _send_message(websocket, Queued(position).to_wire())

    async def disconnected() -> None:
        """Returns once the client is gone. Runs only while it waits in line, when it
        should send nothing: whatever it sends meanwhile is dropped."""
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    # ?input=text: type-to-image, the client sends params and no frames.
    input_kind = websocket.query_params.get("input", "frames")
    text_input = input_kind == "text"
    try:
        if input_kind not in ("frames", "text"):
            raise BadMessage(f"input must be 'frames' or 'text', got {input_kind!r}", field="input")
        lease = await server.admit(
            model_id,
            "websocket",
            credential,
            report_position,
            text_input=text_input,
            credential_in_url=in_url,
            address=websocket.client.host if websocket.client else None,
            client_gone=disconnected,
        )
    except ClientGone:
        logger.info("a client waiting in line left")
        return
    except StreamError as error:
        logger.info("refused a session: %s", error.message)
        await _send_message(websocket, error.to_message())
        await websocket.close(close_code(error.code), reason=error.code)
        return
    live = LiveSession(lease, server.config.limits, text_input=text_input)
    await WebSocketStream(websocket, live).serve(server)


def websocket_credential(websocket: WebSocket, query_name: str) -> tuple[str | None, bool]:
    """The credential of a WebSocket handshake, and whether it came in the URL: browsers
    (and fal's JS client) cannot set headers on a WebSocket, so they bring a token in
    the query parameter `query_name`."""
    credential = credential_of(websocket.headers.get("authorization"))
    if credential is not None:
        return credential, False
    return websocket.query_params.get(query_name), True


class WebSocketStream:
    def __init__(self, websocket: WebSocket, live: LiveSession) -> None:
        self.websocket = websocket
        self.live = live
        self._send_lock = asyncio.Lock()

    async def serve(self, server: ServerState) -> None:
        """Run the session to its end, known to `server` for shutdown meanwhile; an
        internal error closes the connection. Closes the LiveSession."""
        server.streams.add(self)
        try:
            await self.run(server.ready)
        except WebSocketDisconnect:
            pass  # the client left while we were sending: an ordinary end
        except Exception:
            self.live.log.exception("internal error")
            with contextlib.suppress(Exception):
                await self._close_on_internal_error()
        finally:
            server.streams.discard(self)
            self.live.close()

    async def _close_on_internal_error(self) -> None:
        await self.websocket.close(CloseCode.INTERNAL_ERROR, reason="internal error")

    async def run(self, model_ready: asyncio.Event) -> None:
        """Stream until the client disconnects or the session passes a limit."""
        await self._send(await self.live.start(model_ready))
        self.live.expect_input()
        receiving = asyncio.create_task(self._receive_inputs())
        sending = asyncio.create_task(self._send_outputs())
        expiring = asyncio.create_task(self._close_when_expired())
        done, pending = await asyncio.wait(
            {receiving, sending, expiring}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await task
        for task in done:
            with contextlib.suppress(WebSocketDisconnect):
                task.result()

    async def close_gracefully(self, cause: StreamError) -> None:
        """Say `closing`, let the frame in the model come out and be sent, then close
        (1001 for a shutdown, 1000 for a session that reached a limit)."""
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self._send(self.live.stop_input(cause))
            await self.live.settled()
            async with self._send_lock:  # after the last output's metadata and image
                await self.websocket.close(self._close_code(cause), reason=cause.code)

    def _close_code(self, cause: StreamError) -> int:
        return CLOSE_CODES.get(cause.code, CloseCode.NORMAL)

    async def _close_when_expired(self) -> None:
        await self.close_gracefully(await self.live.until_expired())

    async def _receive_inputs(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                self.live.receive_frame(data, self._reply)
            else:
                await self._send(self.live.receive_text(message.get("text") or ""))

    async def _send_outputs(self) -> None:
        while True:
            output = await self.live.next_output()
            message, image = await self.live.encode(output)
            async with self._send_lock:
                await self._send_output(output, message, image)
            self.live.output_sent(output)

    async def _send_output(self, output: Output, message: Message, image: bytes | None) -> None:
        """An output's message, then its image (None for a model error); under the lock."""
        await self.websocket.send_text(json_text(message))
        if image is not None:
            await self.websocket.send_bytes(image)

    async def _reply(self, message: Message) -> None:
        """A reply from the background decoding: the client may be gone by then."""
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self._send(message)

    async def _send(self, message: Message) -> None:
        async with self._send_lock:
            await _send_message(self.websocket, message)


async def _send_message(websocket: WebSocket, message: Message) -> None:
    await websocket.send_text(json_text(message))


def json_text(message: Message) -> str:
    return orjson.dumps(message).decode()
