"""fal's realtime protocol over a WebSocket, so that apps written for fal's clients
run against this server unchanged but for the host and the credential (docs/fal.md).

A thin adapter: `FalStream` is the native WebSocketStream (the same LiveSession, the
same admission, limits, drain and counting) speaking fal's messages. A request is a
msgpack map carrying the params and the image together (session/fal_protocol.py);
a result is a msgpack map with the image's bytes; errors are `x-fal-error` text
frames, and every end the server makes is close code 1000, the only one fal's JS
client takes for normal. `POST /tokens/` mints tokens for fal apps, as fal's REST
API does for its clients' default token provider.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import msgpack
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message as ASGIMessage
from starlette.websockets import WebSocket, WebSocketDisconnect

from frames.frame import ImageFormat
from realtime.server.auth import fal_app_grant
from realtime.server.live_session import LiveSession
from realtime.server.responses import error_response
from realtime.server.state import ClientGone, ServerState
from realtime.server.tokens import lifetime, token_request
from realtime.server.websocket import WebSocketStream, json_text, websocket_credential
from session import fal_protocol
from session.errors import BadMessage, NotFound, StreamError
from session.protocol import CloseCode, MessageType
from session.session import Message, Output
from session.slots import LatestSlot

logger = logging.getLogger("realtime.server.fal")

DEFAULT_APPS = {
    "fal-ai/fast-turbo-diffusion/image-to-image": "sd-turbo",
    "fal-ai/fast-turbo-diffusion": "sd-turbo",
    "fal-ai/fast-lcm-diffusion/image-to-image": "lcm",
    "fal-ai/fast-lcm-diffusion": "lcm",
    "fal-ai/fast-sdxl/image-to-image": "sdxl-turbo",
    "fal-ai/fast-sdxl": "sdxl-turbo",
}
"""fal app ids and the served model each runs here; `--fal-app APP=MODEL` adds or
replaces entries (docs/fal.md)."""

MAX_BUFFERING = 60
"""The most requests a client may ask to wait for the model (`?max_buffering=`), as fal's."""


@dataclass(frozen=True, slots=True)
class FalApp:
    id: str
    """The app id without its `/realtime`: owner/alias[/subpath]."""
    model: str
    takes_frames: bool
    """Requests must carry an image; else an image is made from each request's params."""

    @property
    def alias(self) -> str:
        """The part of the id that fal's tokens name (`allowed_apps`)."""
        return alias_of(self.id)


def alias_of(app_id: str) -> str:
    parts = app_id.split("/")
    return parts[1] if len(parts) > 1 else parts[0]


def app_table(overrides: Mapping[str, str]) -> dict[str, str]:
    return {**DEFAULT_APPS, **overrides}


def find_app(server: ServerState, app_id: str) -> FalApp:
    """The app at `app_id`, or NotFound naming what is served."""
    table = app_table(server.config.fal_apps)
    model = table.get(app_id)
    if model is None or model not in server.pool.model_ids:
        served = sorted(app for app, runs in table.items() if runs in server.pool.model_ids)
        why = "is not in the app table" if model is None else f"runs {model!r}, not served here"
        raise NotFound(
            f"fal app {app_id!r} {why}; this server runs: {', '.join(served) or 'none'}"
            " (map one with --fal-app APP=MODEL)",
            field="app",
        )
    # An app named for images, or a model that cannot make images from text alone.
    takes_frames = (
        app_id.endswith("image-to-image") or not server.registry[model].info.text_to_image
    )
    return FalApp(app_id, model, takes_frames)


async def realtime_endpoint(websocket: WebSocket) -> None:
    """WS /{owner}/{alias}[/{subpath}]/realtime?fal_jwt_token=T&max_buffering=N"""
    server: ServerState = websocket.app.state.server
    app_id = websocket.path_params["app"]
    await websocket.accept()
    credential, in_url = websocket_credential(websocket, "fal_jwt_token")
    grant = fal_app_grant(alias_of(app_id))
    early: LatestSlot[ASGIMessage] = LatestSlot()

    async def disconnected() -> None:
        """Returns once the client is gone. While it waits in line, fal's clients send on:
        the newest request is kept for the session, the others counted once it starts
        (one only: the line may be long)."""
        while (message := await websocket.receive())["type"] != "websocket.disconnect":
            early.put(message)

    try:
        server.authorize(credential, None, in_url=in_url, grant=grant)  # before the app
        app = find_app(server, app_id)
        buffering = _max_buffering(websocket.query_params.get("max_buffering"))
        lease = await server.admit(
            app.model,
            "fal",
            credential,
            text_input=not app.takes_frames,
            credential_in_url=in_url,
            address=websocket.client.host if websocket.client else None,
            client_gone=disconnected,
            grant=grant,
        )
    except ClientGone:
        logger.info("a fal client waiting in line left")
        return
    except StreamError as error:
        logger.info("refused a fal session: %s", error.message)
        await websocket.send_text(json_text(fal_protocol.from_message(error.to_message())))
        await websocket.close(CloseCode.NORMAL, reason=error.code)
        return
    # Never a type-to-image Session: it would make an image from the defaults at `ready`,
    # where fal's clients expect one result per request (`LiveSession.request_image`).
    live = LiveSession(lease, server.config.limits, buffered_frames=buffering)
    live.log.info("fal app %s", app.id)
    await FalStream(websocket, live, app, early).serve(server)


def _max_buffering(value: str | None) -> int:
    if value is None:
        return 1
    if not value.isdigit() or not 1 <= int(value) <= MAX_BUFFERING:
        raise BadMessage(
            f"max_buffering must be a whole number from 1 to {MAX_BUFFERING}, not {value!r}",
            field="max_buffering",
        )
    return int(value)


class FalStream(WebSocketStream):
    """The native stream's loops and lifecycle, in fal's messages."""

    def __init__(
        self, websocket: WebSocket, live: LiveSession, app: FalApp, early: LatestSlot[ASGIMessage]
    ) -> None:
        """`early`: the requests that came while the session waited in line."""
        super().__init__(websocket, live)
        self.app = app
        self._early = early
        self._as_text = False
        """The last request came as JSON text: results go back as JSON, images as data: URIs."""

    async def _receive_inputs(self) -> None:
        if self._early.replaced:
            self.live.session.skip_frames(self._early.replaced, time.perf_counter())
        while (message := self._early.take()) is not None:
            await self._request(message)
        while (message := await self.websocket.receive())["type"] != "websocket.disconnect":
            await self._request(message)

    async def _request(self, message: ASGIMessage) -> None:
        """One request: its params applied, then its image offered (or, for a
        text-to-image app, an image asked for); a bad one gets an error, and the
        session goes on."""
        data = message.get("bytes")
        self._as_text = data is None
        try:
            request = fal_protocol.parse_request(_decode(data, message.get("text")))
        except StreamError as error:
            await self._send(error.to_message())
            return
        try:
            self.live.receive_params(request.params)
            if request.image is None and self.app.takes_frames:
                raise BadMessage(
                    f"{self.app.id} makes images from images: send image_bytes or image_url",
                    field=fal_protocol.IMAGE_BYTES,
                )
        except StreamError as error:
            refused = error.to_message()
            if request.image is not None:
                refused = self.live.refuse_frame(error)
            await self._send(refused, request.request_id)
            return
        if request.image is not None:
            reply = partial(self._reply_to, request.request_id)
            self.live.receive_frame(request.image, reply, request.request_id)
        else:
            self.live.request_image(request.request_id)

    async def _reply_to(self, request_id: object, message: Message) -> None:
        """The error about request `request_id`'s image, from the background decoding."""
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self._send(message, request_id)

    async def _send_output(self, output: Output, message: Message, image: bytes | None) -> None:
        if image is None:  # a model error
            failure = fal_protocol.from_message(message, output.frame.tag)
            await self.websocket.send_text(json_text(failure))
            return
        assert output.pixels is not None
        height, width = output.pixels.shape[:2]
        image_format: ImageFormat = output.params["output_format"]  # type: ignore[assignment]
        result = fal_protocol.result(
            image,
            image_format,
            (width, height),
            message,
            output.params.get("seed"),
            output.frame.tag,
        )
        if self._as_text:
            await self.websocket.send_text(json_text(_with_data_urls(result)))
        else:
            await self.websocket.send_bytes(msgpack.packb(result, use_bin_type=True))

    async def _send(self, message: Message, request_id: object = None) -> None:
        """Errors and `closing` as `x-fal-error`s; nothing else: fal's clients have no
        `ready` or params reply, and would hand any other frame to the app as a result."""
        if message["type"] in (MessageType.ERROR, MessageType.CLOSING):
            failure = fal_protocol.from_message(message, request_id)
            async with self._send_lock:
                await self.websocket.send_text(json_text(failure))

    def _close_code(self, cause: StreamError) -> int:
        return CloseCode.NORMAL

    async def _close_on_internal_error(self) -> None:
        """As fal's own server does: its code, then a normal close."""
        failure = fal_protocol.error("INTERNAL_ERROR", "internal error")
        await self.websocket.send_text(json_text(failure))
        await self.websocket.close(CloseCode.NORMAL, reason="internal error")


def _decode(data: bytes | None, text: str | None) -> object:
    """A request from a binary (msgpack) or text (JSON) frame."""
    try:
        if data is not None:
            return msgpack.unpackb(data, raw=False)
        return orjson.loads(text or "")
    except (ValueError, msgpack.UnpackException) as error:
        kind = "msgpack" if data is not None else "JSON"
        raise BadMessage(f"a request must be a {kind} map of inputs: {error}") from None


def _with_data_urls(result: dict[str, object]) -> dict[str, object]:
    """A result for JSON: each image's bytes as a `data:` URI in `url`, as fal's REST
    results carry them."""
    images = []
    for image in result["images"]:  # type: ignore[attr-defined]
        content = base64.b64encode(image.pop("content")).decode()
        images.append({"url": f"data:{image['content_type']};base64,{content}", **image})
    return {**result, "images": images}


async def issue_fal_token(request: Request) -> Response:
    """POST /tokens/ {"allowed_apps": [alias, ...], "token_expiration": seconds} with
    `Authorization: Key KEY`: a token for those apps, as a bare JSON string."""
    state: ServerState = request.app.state.server
    try:
        identity, body = await token_request(request)
        apps = body.get("allowed_apps")
        served = {alias_of(app) for app in app_table(state.config.fal_apps)}
        if not isinstance(apps, list) or not apps or not all(isinstance(a, str) for a in apps):
            raise BadMessage("allowed_apps must be a list of app aliases", field="allowed_apps")
        if unknown := sorted(set(apps) - served):
            raise NotFound(
                f"no fal app named {', '.join(unknown)} here; aliases: {', '.join(sorted(served))}",
                field="allowed_apps",
            )
        ttl = lifetime(body, "token_expiration", state)
    except StreamError as error:
        # fal's clients read the reason from `detail`.
        return error_response(error, also={"detail": error.message})
    grants = [fal_app_grant(alias) for alias in apps]
    return JSONResponse(state.access.issue_token(identity, grants, ttl, time.time()))
