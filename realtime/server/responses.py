"""HTTP answers for the errors of session/errors.py, shared by every HTTP route."""

from __future__ import annotations

from starlette.responses import JSONResponse

from session.errors import (
    Forbidden,
    KeyLimit,
    ServerFull,
    ShuttingDown,
    StreamError,
    Unauthorized,
    UnknownModel,
)

RETRY_AFTER_S = 5
STATUS = {
    Unauthorized: 401,
    Forbidden: 403,
    UnknownModel: 404,
    KeyLimit: 429,
    ServerFull: 503,
    ShuttingDown: 503,
}


def error_response(error: StreamError, status: int | None = None) -> JSONResponse:
    """The error as a JSON body, with its status (400 unless STATUS says otherwise)."""
    status = status or STATUS.get(type(error), 400)
    headers = {}
    if status in (429, 503):
        headers["Retry-After"] = str(RETRY_AFTER_S)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="realtime"'
    return JSONResponse(error.to_message(), status_code=status, headers=headers)
