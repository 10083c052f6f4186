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


@dataclass(frozen=True, slots=True)
class Ready:
    session_id: str
    model: str
    width: int
    height: int
    params: dict[str, Any]
    random_weights: bool = False
    """The model has random weights (`--random-weights`): its outputs are noise."""


@dataclass(frozen=True, slots=True)
class FrameOutput:
    source_frame: int
    timings_ms: dict[str, float]
    dropped_frames: int
    image: bytes

    def pixels(self) -> Pixels:
        return decode_image(self.image)


@dataclass(frozen=True, slots=True)
class Params:
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Closing:
    """The session is ending (`code`: shutting_down, idle_timeout, session_time_limit):
    the frame in the model still comes, then the server closes the connection."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    code: str
    message: str
    field: str | None = None
    source_frame: int | None = None


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


Message = FrameOutput | Params | ErrorMessage | Closing


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
        first = orjson.loads(await connection.recv())
        while first.get("type") == "queued":
            if on_queued is not None:
                on_queued(first["position"])
            first = orjson.loads(await connection.recv())
        if first.get("type") != "ready":
            await connection.wait_closed()
            raise ServerError(error_message(first), connection.close_code)
        ready = Ready(
            **{key: first[key] for key in ("session_id", "model", "width", "height", "params")},
            random_weights=bool(first.get("random_weights", False)),
        )
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
        await self.connection.send(orjson.dumps({"type": "params", **params}).decode())

    async def update_params(self, **params: Any) -> dict[str, Any]:
        """Update params and return all current values, or raise ServerError.
        Outputs that arrive before the answer are kept for `receive`."""
        await self.send_params(**params)
        while True:
            message = await self._receive_from_server()
            if isinstance(message, Params):
                return message.params
            if isinstance(message, ErrorMessage) and message.code in (
                "invalid_params",
                "bad_message",
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
        data = orjson.loads(await self.connection.recv())
        kind = data.get("type")
        if kind == "frame":
            image = await self.connection.recv()
            assert isinstance(image, bytes), "a frame message must be followed by its image"
            return FrameOutput(
                data["source_frame"], data["timings_ms"], data["dropped_frames"], image
            )
        if kind == "params":
            return Params(data["params"])
        if kind == "error":
            return error_message(data)
        if kind == "closing":
            return Closing(str(data.get("code")), str(data.get("message")))
        raise ValueError(f"unexpected message from server: {data!r}")


def error_message(data: dict[str, Any]) -> ErrorMessage:
    return ErrorMessage(
        str(data.get("code")), str(data.get("message")), data.get("field"), data.get("source_frame")
    )
