"""Request bodies: read only once the request is authorized, and never past a cap.

Every endpoint that takes a body reads it with `read_body`: a Content-Length over
the cap is refused before a byte of the body is read, and a chunked body is
counted as it arrives and refused as soon as it passes the cap. Such endpoints
are wrapped in `reads_body`, so that a refused request's connection is closed
and the rest of its body is never read either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from session.errors import TooLarge

Endpoint = Callable[[Request], Awaitable[Response]]


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or raise TooLarge once it is over `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(_too_large(limit))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(_too_large(limit))
    return bytes(body)


def reads_body(endpoint: Endpoint) -> Endpoint:
    """`endpoint`, with its error answers closing the connection: uvicorn would
    otherwise read (and drop) whatever the client still sends of a refused body."""

    async def closing_on_error(request: Request) -> Response:
        response = await endpoint(request)
        if response.status_code >= 400:
            response.headers["Connection"] = "close"
        return response

    return closing_on_error


def _too_large(limit: int) -> str:
    return f"the request body is over {limit} bytes (the server's --max-body-bytes)"
