"""The wire vocabulary: every message type, error code, close code, HTTP status and
hop name that the server and its clients exchange, and the typed messages.

The server builds its messages here (`Session`, the transports) and the clients
parse them here (`realtime.clients`), so the two cannot drift apart.
docs/protocol.md documents the same names; tests/session/test_protocol.py checks
its tables against this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Wire = dict[str, Any]
"""A message as it travels: a JSON object."""


class MessageType(StrEnum):
    READY = "ready"
    PARAMS = "params"
    FRAME = "frame"
    ERROR = "error"
    CLOSING = "closing"
    QUEUED = "queued"


class ErrorCode(StrEnum):
    """The `code` of an `error` or `closing` message (and of an HTTP error body)."""

    INVALID_PARAMS = "invalid_params"
    BAD_MESSAGE = "bad_message"
    BAD_FRAME = "bad_frame"
    UNKNOWN_MODEL = "unknown_model"
    SERVER_FULL = "server_full"
    SHUTTING_DOWN = "shutting_down"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    KEY_SESSION_LIMIT = "key_session_limit"
    VIEWER_LIMIT = "viewer_limit"
    ADDRESS_SESSION_LIMIT = "address_session_limit"
    BAD_OFFER = "bad_offer"
    TOO_LARGE = "too_large"
    NEEDS_FRAMES = "needs_frames"
    RATE_LIMITED = "rate_limited"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    SESSION_TIME_LIMIT = "session_time_limit"
    NOT_FOUND = "not_found"
    MODEL_ERROR = "model_error"
    OUT_OF_MEMORY = "out_of_memory"
    MODEL_RESTARTED = "model_restarted"
    MODEL_UNAVAILABLE = "model_unavailable"


class CloseCode(IntEnum):
    """WebSocket close codes (RFC 6455)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013


class Hop:
    """The hops of a frame's path, named the same in code, logs, metrics and the
    `timings_ms` of each `frame` message. Plain strings: they are dict keys on the wire."""

    QUEUE: Final = "queue"
    DECODE: Final = "decode"
    CONTROL: Final = "control"
    MODEL: Final = "model"
    ENCODE: Final = "encode"


HOPS: tuple[str, ...] = (Hop.QUEUE, Hop.DECODE, Hop.CONTROL, Hop.MODEL, Hop.ENCODE)


CLOSE_CODES: Mapping[ErrorCode, CloseCode] = {
    ErrorCode.SERVER_FULL: CloseCode.TRY_AGAIN_LATER,
    ErrorCode.KEY_SESSION_LIMIT: CloseCode.TRY_AGAIN_LATER,
    ErrorCode.ADDRESS_SESSION_LIMIT: CloseCode.TRY_AGAIN_LATER,
    ErrorCode.SHUTTING_DOWN: CloseCode.GOING_AWAY,
    ErrorCode.HANDSHAKE_TIMEOUT: CloseCode.NORMAL,
    ErrorCode.IDLE_TIMEOUT: CloseCode.NORMAL,
    ErrorCode.SESSION_TIME_LIMIT: CloseCode.NORMAL,
}
"""How a WebSocket closes after an error that ends its session; any other refusal
closes with POLICY_VIOLATION."""

HTTP_STATUSES: Mapping[ErrorCode, int] = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.UNKNOWN_MODEL: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.KEY_SESSION_LIMIT: 429,
    ErrorCode.VIEWER_LIMIT: 429,
    ErrorCode.ADDRESS_SESSION_LIMIT: 429,
    ErrorCode.SERVER_FULL: 503,
    ErrorCode.SHUTTING_DOWN: 503,
}
"""The HTTP status of an error answer; any other error is 400."""


SESSION_GOES_ON: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.BAD_FRAME,
        ErrorCode.INVALID_PARAMS,
        ErrorCode.BAD_MESSAGE,
        ErrorCode.RATE_LIMITED,
        ErrorCode.MODEL_ERROR,
        ErrorCode.OUT_OF_MEMORY,
        ErrorCode.MODEL_RESTARTED,
        ErrorCode.MODEL_UNAVAILABLE,
    }
)
"""Errors about one frame or one message of an open session: it goes on after them."""


def close_code(code: str) -> CloseCode:
    return CLOSE_CODES.get(ErrorCode(code), CloseCode.POLICY_VIOLATION)


def http_status(code: str) -> int:
    return HTTP_STATUSES.get(ErrorCode(code), 400)


# The server's messages


@dataclass(frozen=True, slots=True)
class Ready:
    """The session holds a warm model: frames and params may come."""

    session_id: str
    model: str
    width: int
    height: int
    params: dict[str, Any]
    random_weights: bool = False
    """The model has random weights (`--random-weights`): its outputs are noise."""
    worker: str = ""
    """The worker the session is pinned to for its life, and its device."""
    device: str = ""

    def to_wire(self) -> Wire:
        wire = {"type": MessageType.READY, **_fields(self)}
        if not self.random_weights:
            del wire["random_weights"]  # said only when it is so
        for placement in ("worker", "device"):
            if not wire[placement]:
                del wire[placement]  # a session not pinned by a server (tests of the core)
        return wire


@dataclass(frozen=True, slots=True)
class ParamsMessage:
    """Every current param, the answer to a params update."""

    params: dict[str, Any]

    def to_wire(self) -> Wire:
        return {"type": MessageType.PARAMS, "params": self.params}


@dataclass(frozen=True, slots=True)
class FrameMessage:
    """An output's metadata; over the WebSocket its encoded image follows."""

    source_frame: int
    timings_ms: dict[str, float]
    """Milliseconds in each hop (`Hop`)."""
    dropped_frames: int
    skipped_similar: int = 0

    def to_wire(self) -> Wire:
        return {"type": MessageType.FRAME, **_fields(self)}


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """Something the client sent, or a frame, failed; the session goes on unless a
    close follows."""

    code: str
    message: str
    field: str | None = None
    """The param or message field at fault, when one is."""
    source_frame: int | None = None
    """The frame that failed, for a per-frame error."""

    def to_wire(self) -> Wire:
        wire: Wire = {"type": MessageType.ERROR, "code": self.code, "message": self.message}
        if self.field is not None:
            wire["field"] = self.field
        if self.source_frame is not None:
            wire["source_frame"] = self.source_frame
        return wire


@dataclass(frozen=True, slots=True)
class Closing:
    """The session is ending (`code`: shutting_down, idle_timeout, session_time_limit):
    the frame in the model still comes, then the server closes the connection."""

    code: str
    message: str

    def to_wire(self) -> Wire:
        return {"type": MessageType.CLOSING, "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Queued:
    """The server is full: the session waits in line at `position` (1 is next)."""

    position: int

    def to_wire(self) -> Wire:
        return {"type": MessageType.QUEUED, "position": self.position}


ServerMessage = Ready | ParamsMessage | FrameMessage | ErrorMessage | Closing | Queued


def parse_server_message(wire: Mapping[str, Any]) -> ServerMessage:
    """A message from the server, typed; ValueError for anything else."""
    kind = wire.get("type")
    body = {name: value for name, value in wire.items() if name != "type"}
    try:
        match kind:
            case MessageType.READY:
                return Ready(**_known(Ready, body))
            case MessageType.PARAMS:
                return ParamsMessage(body["params"])
            case MessageType.FRAME:
                return FrameMessage(**_known(FrameMessage, body))
            case MessageType.ERROR:
                return ErrorMessage(**_known(ErrorMessage, body))
            case MessageType.CLOSING:
                return Closing(str(body.get("code")), str(body.get("message")))
            case MessageType.QUEUED:
                return Queued(int(body["position"]))
    except (KeyError, TypeError) as error:
        raise ValueError(f"malformed {kind} message from server: {dict(wire)!r}") from error
    raise ValueError(f"unexpected message from server: {dict(wire)!r}")


def _fields(message: DataclassInstance) -> Wire:
    return {field.name: getattr(message, field.name) for field in fields(message)}


def _known(kind: type[DataclassInstance], body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields `kind` has: a newer server may add others."""
    names = {field.name for field in fields(kind)}
    return {name: value for name, value in body.items() if name in names}


# What clients send


def params_update(params: Mapping[str, Any]) -> Wire:
    return {"type": MessageType.PARAMS, **params}
