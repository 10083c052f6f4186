"""The errors a client can be told about. Each carries the `code` of its wire message.

    StreamError
    ├── InvalidParams   invalid_params   a params field is unknown, mistyped or out of range
    ├── BadMessage      bad_message      a text message is not a JSON object with a known type
    ├── UnknownModel    unknown_model    the requested model is not served (close 1008, HTTP 404)
    ├── ServerFull      server_full      every session slot is taken (close 1013, HTTP 503)
    ├── ShuttingDown    shutting_down    the server is draining for shutdown (close 1001, HTTP 503)
    ├── Unauthorized    unauthorized     a missing, wrong, forged or expired credential (1008, 401)
    ├── Forbidden       forbidden        a valid token for another model (close 1008, HTTP 403)
    ├── KeyLimit        key_session_limit  the API key has its most sessions open (1013, 429)
    ├── BadOffer        bad_offer        a WebRTC offer that is not usable SDP (HTTP 400)
    ├── NeedsFrames     needs_frames     a type-to-image session for a model that needs frames
                                         (close 1008, HTTP 400)
    ├── RateLimited     rate_limited     too many control messages per second: this one is refused
    ├── IdleTimeout     idle_timeout     no frame and no params for too long (`closing`, then 1000)
    └── SessionTimeLimit  session_time_limit  the session reached its longest duration (same)

Bad frames (`bad_frame`) and model failures (`model_error`, `out_of_memory`,
`model_restarted`, `model_unavailable`: see session/jobs.py) are reported per
frame by the Session without raising: the session goes on after them.
"""

from __future__ import annotations


class StreamError(Exception):
    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_message(self) -> dict[str, object]:
        message: dict[str, object] = {"type": "error", "code": self.code, "message": self.message}
        if self.field is not None:
            message["field"] = self.field
        return message


class InvalidParams(StreamError):
    code = "invalid_params"


class BadMessage(StreamError):
    code = "bad_message"


class UnknownModel(StreamError):
    code = "unknown_model"


class ServerFull(StreamError):
    code = "server_full"


class ShuttingDown(StreamError):
    code = "shutting_down"


class Unauthorized(StreamError):
    code = "unauthorized"


class Forbidden(StreamError):
    code = "forbidden"


class KeyLimit(StreamError):
    code = "key_session_limit"


class BadOffer(StreamError):
    code = "bad_offer"


class NeedsFrames(StreamError):
    code = "needs_frames"


class RateLimited(StreamError):
    code = "rate_limited"


class IdleTimeout(StreamError):
    code = "idle_timeout"


class SessionTimeLimit(StreamError):
    code = "session_time_limit"
