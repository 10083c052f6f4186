"""HTTP answers for the errors of session/errors.py, shared by every HTTP route."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

from session.errors import StreamError
from session.protocol import http_status

RETRY_AFTER_S = 5


def error_response(
    error: StreamError, status: int | None = None, also: Mapping[str, object] | None = None
) -> JSONResponse:
    """The error as a JSON body (with the fields in `also`), with its status
    (session.protocol.HTTP_STATUSES's)."""
    status = status or http_status(error.code)
    headers = {}
    if status in (429, 503):
        headers["Retry-After"] = str(RETRY_AFTER_S)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="realtime"'
    return JSONResponse({**error.to_message(), **(also or {})}, status_code=status, headers=headers)
