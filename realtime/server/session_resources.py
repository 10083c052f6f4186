"""A session's HTTP resources, whatever its transport (WebSocket, WebRTC, WHIP):

    PUT    /v1/sessions/{session_id}/reference   body: an image -> the session's reference
    DELETE /v1/sessions/{session_id}/reference   clears it

The reference conditions every later output (avatar mode: models with an
IP-Adapter). It travels over HTTP so that it works alike for every transport,
WHIP's included, which has no channel of its own for it. As WHIP's resources,
it is its owner's: the credential is checked before the body is read, and a
session another key opened answers 404 as an unknown id does. The image is
read up to the frames' message cap and decoded with the frames' limits.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from realtime.server.bodies import read_body, reads_body
from realtime.server.live_session import LiveSession
from realtime.server.responses import error_response
from realtime.server.signalling import is_callers, server_of
from session.errors import NotFound, StreamError


async def session_reference(request: Request) -> Response:
    """PUT sets the session's reference image, DELETE clears it."""
    try:
        live = _owned_session(request)
        data = None
        if request.method == "PUT":
            data = await read_body(request, server_of(request).config.max_message_bytes)
        await live.set_reference(data)
    except StreamError as error:
        return error_response(error)
    return JSONResponse({"session_id": live.id, "reference": data is not None})


def _owned_session(request: Request) -> LiveSession:
    """The open session in the path, when the caller opened it; else raise NotFound."""
    live = server_of(request).sessions.get(request.path_params["session_id"])
    owner = None if live is None else live.lease.owner
    # The credential is checked whether or not the session exists.
    owned = is_callers(request, owner, None if live is None else live.session.model.id)
    if live is None or not owned:
        raise NotFound("no such session")
    return live


ROUTES = [  # mounted under /v1
    Route(
        "/sessions/{session_id}/reference", reads_body(session_reference), methods=["PUT", "DELETE"]
    ),
]
