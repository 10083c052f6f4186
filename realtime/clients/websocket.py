"""A small asyncio client for the native WebSocket protocol (docs/protocol.md).

    async with await StreamClient.connect("ws://127.0.0.1:8000", model="invert") as client:
        await client.update_params(output_quality=95)
        await client.send_frame(jpeg_bytes)
        async for output in client.outputs():
            print(output.source_frame, output.timings_ms)

It reads only when asked, so a caller that stops reading exerts backpressure
on the server exactly as a slow network client would.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import orjson
from websockets.asyncio.client import ClientConnection, connect

from frames.codecs import decode_image
from frames.frame import Pixels
from session.protocol import (
    Closing,
    ErrorCode,
    ErrorMessage,
    FrameMessage,
    ParamsMessage,
    Queued,
    Ready,
    params_update,
    parse_server_message,
)

__all__ = [
    "Closing",
    "ErrorMessage",
    "FrameOutput",
    "Message",
    "ParamsMessage",
    "Ready",
    "ServerError",
    "StreamClient",
]


@dataclass(frozen=True, slots=True)
class FrameOutput:
    """A `frame` message with the encoded image that follows it."""

    source_frame: int
    timings_ms: dict[str, float]
    dropped_frames: int
    image: bytes

    def pixels(self) -> Pixels:
        return decode_image(self.image)


class ServerError(Exception):
    """The server refused something: `error` says what; `close_code` if it then closed
    the WebSocket, `status` if it answered an HTTP request (WebRTC signalling)."""

    def __init__(
        self, error: ErrorMessage, close_code: int | None = None, status: int | None = None
    ) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error
        self.close_code = close_code
        self.status = status


Message = FrameOutput | ParamsMessage | ErrorMessage | Closing


class StreamClient:
    def __init__(self, connection: ClientConnection, ready: Ready) -> None:
        self.connection = connection
        self.ready = ready
        self.errors: list[ErrorMessage] = []
        self._early: collections.deque[Message] = collections.deque()

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        token: str | None = None,
        max_size: int | None = 2**26,
        on_queued: Callable[[int], object] | None = None,
        text_input: bool = False,
    ) -> StreamClient:
        """Open a session; returns once the server sent `ready`, or raises ServerError.
        A server with API keys wants `api_key` (sent as a Bearer header) or a `token`.
        A full server with a waiting line sends the position in it (1 is next) to
        `on_queued` until a slot frees. `text_input`: type-to-image, an image for
        each params change (and one at `ready`) and no frames to send."""
        fields = {
            name: value
            for name, value in (
                ("model", model),
                ("token", token),
                ("input", "text" if text_input else None),
            )
            if value
        }
        query = f"?{urlencode(fields)}" if fields else ""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        connection = await connect(
            f"{url.rstrip('/')}/v1/stream{query}", max_size=max_size, additional_headers=headers
        )
        first = parse_server_message(orjson.loads(await connection.recv()))
        while isinstance(first, Queued):
            if on_queued is not None:
                on_queued(first.position)
            first = parse_server_message(orjson.loads(await connection.recv()))
        if not isinstance(first, Ready):
            await connection.wait_closed()
            if not isinstance(first, ErrorMessage):
                raise ValueError(f"expected ready, got {first!r}")
            raise ServerError(first, connection.close_code)
        ready = first
        return cls(connection, ready)

    async def __aenter__(self) -> StreamClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.connection.close()

    async def send_frame(self, image: bytes) -> None:
        """Send one encoded image (JPEG, PNG or WebP)."""
        await self.connection.send(image)

    async def send_params(self, **params: Any) -> None:
        """Send a params update without waiting for the answer."""
        await self.connection.send(orjson.dumps(params_update(params)).decode())

    async def update_params(self, **params: Any) -> dict[str, Any]:
        """Update params and return all current values, or raise ServerError.
        Outputs that arrive before the answer are kept for `receive`."""
        await self.send_params(**params)
        while True:
            message = await self._receive_from_server()
            if isinstance(message, ParamsMessage):
                return message.params
            if isinstance(message, ErrorMessage) and message.code in (
                ErrorCode.INVALID_PARAMS,
                ErrorCode.BAD_MESSAGE,
            ):
                raise ServerError(message)
            self._early.append(message)

    async def receive(self) -> Message:
        """The next message: a frame output, a params answer, an error or `closing`."""
        if self._early:
            return self._early.popleft()
        return await self._receive_from_server()

    async def outputs(self) -> AsyncIterator[FrameOutput]:
        """Frame outputs until the connection closes; errors are collected in `errors`."""
        while True:
            message = await self.receive()
            if isinstance(message, FrameOutput):
                yield message
            elif isinstance(message, ErrorMessage):
                self.errors.append(message)

    async def _receive_from_server(self) -> Message:
        message = parse_server_message(orjson.loads(await self.connection.recv()))
        if isinstance(message, FrameMessage):
            image = await self.connection.recv()
            assert isinstance(image, bytes), "a frame message must be followed by its image"
            return FrameOutput(
                message.source_frame, message.timings_ms, message.dropped_frames, image
            )
        if isinstance(message, ParamsMessage | ErrorMessage | Closing):
            return message
        raise ValueError(f"unexpected message from server: {message!r}")
