"""fal's realtime protocol, sans-I/O: what a request from fal's clients asks of a
session, and the result and error maps those clients expect (docs/fal.md).

A request is a flat map of model inputs: the image (`image_bytes`, or `image_url`
as a `data:` URI), params under fal's names, and an optional `request_id` that
comes back with the result made from it. A result is a map with `images`; an
error is a JSON text frame of type `x-fal-error`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from frames.frame import ImageFormat
from session.errors import BadMessage, InvalidParams
from session.protocol import ErrorCode

RENAMED = {"num_inference_steps": "steps", "format": "output_format"}
"""fal's input names for this server's params; the others (prompt, strength,
guidance_scale, seed, ...) are the same in both."""

IGNORED = frozenset(
    {
        "sync_mode",  # results always carry the image's bytes
        "model_name",  # the app table (`--fal-app`) picks the model
        "image_size",  # the model has one size
        "width",
        "height",
        "negative_prompt",  # the few-step models run without guidance on a negative
        "enable_safety_checks",  # this server has no safety checker (docs/fal.md)
        "enable_safety_checker",
        "safety_checker_version",
        "expand_prompt",
        "preserve_aspect_ratio",
        "crop_output",
    }
)
"""Inputs of fal's apps and demos that are accepted and have no effect here."""

REQUEST_ID = "request_id"
IMAGE_BYTES = "image_bytes"
IMAGE_URL = "image_url"

CONTENT_TYPES: dict[ImageFormat, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
}

TIMEOUT = "TIMEOUT"
"""fal's code for a session closed for want of input; its JS client expects it."""


@dataclass(frozen=True, slots=True)
class FalRequest:
    params: dict[str, object]
    """The params it sets, under this server's names."""
    image: bytes | None
    """The encoded image, or None: a text-to-image request."""
    request_id: object = None


def parse_request(message: object) -> FalRequest:
    """A decoded request, or raise BadMessage / InvalidParams naming the field."""
    if not isinstance(message, Mapping):
        raise BadMessage("a request must be a map of inputs (prompt, image_bytes, ...)")
    params: dict[str, object] = {}
    image: bytes | None = None
    for name, value in message.items():
        if not isinstance(name, str):
            raise BadMessage(f"input names must be strings, not {name!r}")
        if value is None or name in IGNORED or name == REQUEST_ID:
            continue  # fal's clients send nil for an input left out
        if name in (IMAGE_BYTES, IMAGE_URL):
            if image is not None:
                raise BadMessage("send image_bytes or image_url, not both", field=name)
            image = _image_bytes(value) if name == IMAGE_BYTES else _data_url(value)
        elif name == "num_images":
            if value != 1:
                raise InvalidParams("num_images must be 1: one image per request", field=name)
        else:
            params[RENAMED.get(name, name)] = value
    return FalRequest(params, image, message.get(REQUEST_ID))


def _image_bytes(value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise BadMessage(
            f"image_bytes must be binary (msgpack bin), not {type(value).__name__}",
            field=IMAGE_BYTES,
        )
    return bytes(value)


def _data_url(value: object) -> bytes:
    """The bytes of a base64 `data:` URL; this server fetches no other URL."""
    if not isinstance(value, str) or not value.startswith("data:"):
        raise BadMessage(
            "image_url must be a data: URI (data:image/jpeg;base64,...): this server"
            " fetches no URL; or send the image's bytes as image_bytes",
            field=IMAGE_URL,
        )
    header, comma, payload = value.partition(",")
    if not comma or not header.endswith(";base64"):
        raise BadMessage("image_url must be a base64 data: URI", field=IMAGE_URL)
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error as error:
        raise BadMessage(f"image_url is not valid base64: {error}", field=IMAGE_URL) from None


def result(
    image: bytes,
    image_format: ImageFormat,
    size: tuple[int, int],
    frame_message: Mapping[str, object],
    seed: object,
    request_id: object,
) -> dict[str, object]:
    """The result map for an output: its image (`size` is width, height) and, from its
    `frame` message (session/protocol.py), its number, hop timings and drops so far."""
    width, height = size
    timings_ms = frame_message["timings_ms"]
    assert isinstance(timings_ms, Mapping)
    mapped: dict[str, object] = {
        "images": [
            {
                "content": image,
                "content_type": CONTENT_TYPES[image_format],
                "width": width,
                "height": height,
            }
        ],
        # fal reports seconds.
        "timings": {hop: round(ms / 1000, 6) for hop, ms in timings_ms.items()},
        "frame": frame_message["source_frame"],
        "dropped_frames": frame_message["dropped_frames"],
    }
    if seed is not None:
        mapped["seed"] = seed
    if request_id is not None:
        mapped[REQUEST_ID] = request_id
    return mapped


def error(
    code: str, reason: str, field: str | None = None, request_id: object = None
) -> dict[str, object]:
    """An `x-fal-error` frame (sent as JSON text), naming the input at fault and the
    request, when known: fal's clients raise or report it, and the session goes on
    unless the server then closes."""
    frame: dict[str, object] = {"type": "x-fal-error", "error": code, "reason": reason}
    if field is not None:
        frame["field"] = field
    if request_id is not None:
        frame[REQUEST_ID] = request_id
    return frame


def from_message(message: Mapping[str, object], request_id: object = None) -> dict[str, object]:
    """The `x-fal-error` for one of this server's `error` or `closing` messages."""
    field = message.get("field")
    return error(
        _fal_code(str(message["code"])),
        str(message["message"]),
        field if isinstance(field, str) else None,
        request_id,
    )


def _fal_code(code: str) -> str:
    return TIMEOUT if code == ErrorCode.IDLE_TIMEOUT else code
