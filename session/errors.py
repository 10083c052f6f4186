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
    ├── AddressLimit    address_session_limit  the client's address has its most sessions
                                         open (`--max-sessions-per-address`; 1013, 429)
    ├── BadOffer        bad_offer        an unusable WebRTC offer, or one over a limit (HTTP 400)
    ├── ViewerLimit     viewer_limit     the session has its most WHEP viewers (HTTP 429)
    ├── TooLarge        too_large        a request body over the server's cap (HTTP 413)
    ├── NotFound        not_found        no such session or viewer, or not the caller's (HTTP 404)
    ├── NeedsFrames     needs_frames     a type-to-image session for a model that needs frames
                                         (close 1008, HTTP 400)
    ├── RateLimited     rate_limited     too many control messages per second: this one is refused
    ├── HandshakeTimeout  handshake_timeout  no first frame (or params, for type-to-image) in
                                         time after `ready` (`closing`, then 1000)
    ├── IdleTimeout     idle_timeout     no frame and no params for too long (`closing`, then 1000)
    └── SessionTimeLimit  session_time_limit  the session reached its longest duration (same)

Bad frames (`bad_frame`) and model failures (`model_error`, `out_of_memory`,
`model_restarted`, `model_unavailable`: see session/jobs.py) are reported per
frame by the Session without raising: the session goes on after them. Every code,
with its close code and HTTP status, is in session/protocol.py.
"""

from __future__ import annotations

from session.protocol import ErrorCode, ErrorMessage, Wire


class StreamError(Exception):
    code: ErrorCode

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_message(self) -> Wire:
        return ErrorMessage(self.code, self.message, self.field).to_wire()


class InvalidParams(StreamError):
    code = ErrorCode.INVALID_PARAMS


class BadMessage(StreamError):
    code = ErrorCode.BAD_MESSAGE


class UnknownModel(StreamError):
    code = ErrorCode.UNKNOWN_MODEL


class ServerFull(StreamError):
    code = ErrorCode.SERVER_FULL


class ShuttingDown(StreamError):
    code = ErrorCode.SHUTTING_DOWN


class Unauthorized(StreamError):
    code = ErrorCode.UNAUTHORIZED


class Forbidden(StreamError):
    code = ErrorCode.FORBIDDEN


class KeyLimit(StreamError):
    code = ErrorCode.KEY_SESSION_LIMIT


class AddressLimit(StreamError):
    code = ErrorCode.ADDRESS_SESSION_LIMIT


class BadOffer(StreamError):
    code = ErrorCode.BAD_OFFER


class TooLarge(StreamError):
    code = ErrorCode.TOO_LARGE


class NotFound(StreamError):
    code = ErrorCode.NOT_FOUND


class ViewerLimit(StreamError):
    code = ErrorCode.VIEWER_LIMIT


class NeedsFrames(StreamError):
    code = ErrorCode.NEEDS_FRAMES


class RateLimited(StreamError):
    code = ErrorCode.RATE_LIMITED


class HandshakeTimeout(StreamError):
    code = ErrorCode.HANDSHAKE_TIMEOUT


class IdleTimeout(StreamError):
    code = ErrorCode.IDLE_TIMEOUT


class SessionTimeLimit(StreamError):
    code = ErrorCode.SESSION_TIME_LIMIT
