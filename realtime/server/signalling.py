"""WebRTC signalling over HTTP: a JSON offer/answer endpoint, WHIP ingest and WHEP egress.

    POST   /v1/webrtc/offer         {"sdp","type":"offer","model"?,"params"?} -> answer, session_id
    POST   /v1/whip?model=ID        application/sdp offer -> 201, answer, Location
    DELETE /v1/whip/{session_id}    ends the session
    POST   /v1/whep/{session_id}    application/sdp offer -> 201, answer, Location (a viewer)
    DELETE /v1/whep/{session_id}/{viewer_id}

Answers carry every ICE candidate (no trickle ICE), so PATCH on a WHIP or WHEP
resource is answered 405, as RFC 9725 asks of servers without trickle ICE.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from realtime.ice import rtc_configuration
from realtime.server.auth import bearer
from realtime.server.live_session import LiveSession
from realtime.server.responses import error_response
from realtime.server.state import ClientGone, ServerState
from realtime.server.webrtc import PeerSession
from session.errors import BadMessage, StreamError
from session.protocol import ErrorCode, ErrorMessage, http_status

SDP = "application/sdp"
CLIENT_GONE = 499
"""The status logged for an offer whose client left while it waited in line (nginx's
"client closed request"): nobody reads it."""


async def webrtc_offer(request: Request) -> Response:
    """POST /v1/webrtc/offer: the peer sends its camera and gets the generated video back."""
    server = _server(request)
    try:
        offer = _json_object(await request.body())
        sdp = offer.get("sdp")
        if offer.get("type") != "offer":
            raise BadMessage("'type' must be \"offer\"", field="type")
        if not isinstance(sdp, str):
            raise BadMessage("'sdp' must be the offer's SDP text", field="sdp")
        params = offer.get("params", {})
        if not isinstance(params, dict):
            raise BadMessage("'params' must be an object", field="params")
        model = offer.get("model", server.config.default_model)
        credential = _credential(request) or offer.get("token")
        peer = await _open_session(request, str(model), sdp, params, credential)
    except StreamError as error:
        return error_response(error)
    except ClientGone:
        return Response(status_code=CLIENT_GONE)
    return JSONResponse(
        {"sdp": peer.pc.localDescription.sdp, "type": "answer", "session_id": peer.id}
    )


async def whip(request: Request) -> Response:
    """POST /v1/whip?model=ID: WHIP ingest (RFC 9725)."""
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Accept-Post": SDP, "Allow": "POST, OPTIONS"})
    server = _server(request)
    if request.headers.get("content-type", "").split(";")[0].strip() != SDP:
        return error_response(BadMessage(f"Content-Type must be {SDP}"), 415)
    model = request.query_params.get("model", server.config.default_model)
    try:
        offer = (await request.body()).decode()
        peer = await _open_session(request, model, offer, {}, _credential(request))
    except (StreamError, UnicodeDecodeError) as error:
        if isinstance(error, UnicodeDecodeError):
            error = BadMessage("the SDP offer must be UTF-8 text", field="sdp")
        return error_response(error)
    except ClientGone:
        return Response(status_code=CLIENT_GONE)
    return _sdp_created(peer.pc.localDescription.sdp, f"/v1/whip/{peer.id}")


async def whip_session(request: Request) -> Response:
    """DELETE /v1/whip/{session_id} ends the session; PATCH (trickle ICE) is not supported."""
    if request.method == "PATCH":
        return Response(status_code=405, headers={"Allow": "DELETE"})
    peer = _server(request).peers.get(request.path_params["session_id"])
    if peer is None:
        return _not_found("session")
    try:
        _server(request).authorize(_credential(request), peer.live.session.model.id)
    except StreamError as error:
        return error_response(error)
    await peer.close()
    return Response(status_code=200)


async def whep(request: Request) -> Response:
    """POST /v1/whep/{session_id}: a viewer that watches a session's output."""
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Accept-Post": SDP, "Allow": "POST, OPTIONS"})
    peer = _server(request).peers.get(request.path_params["session_id"])
    if peer is None:
        return _not_found("session")
    if request.headers.get("content-type", "").split(";")[0].strip() != SDP:
        return error_response(BadMessage(f"Content-Type must be {SDP}"), 415)
    try:
        _server(request).authorize(_credential(request), peer.live.session.model.id)
        viewer_id, answer = await peer.add_viewer((await request.body()).decode())
    except StreamError as error:
        return error_response(error)
    return _sdp_created(answer, f"/v1/whep/{peer.id}/{viewer_id}")


async def whep_viewer(request: Request) -> Response:
    """DELETE /v1/whep/{session_id}/{viewer_id} ends that viewer."""
    if request.method == "PATCH":
        return Response(status_code=405, headers={"Allow": "DELETE"})
    peer = _server(request).peers.get(request.path_params["session_id"])
    if peer is None or request.path_params["viewer_id"] not in peer.viewers:
        return _not_found("viewer")
    try:
        _server(request).authorize(_credential(request), peer.live.session.model.id)
    except StreamError as error:
        return error_response(error)
    await peer.remove_viewer(request.path_params["viewer_id"])
    return Response(status_code=200)


ROUTES = [  # mounted under /v1
    Route("/webrtc/offer", webrtc_offer, methods=["POST"]),
    Route("/whip", whip, methods=["POST", "OPTIONS"]),
    Route("/whip/{session_id}", whip_session, methods=["DELETE", "PATCH"]),
    Route("/whep/{session_id}", whep, methods=["POST", "OPTIONS"]),
    Route("/whep/{session_id}/{viewer_id}", whep_viewer, methods=["DELETE", "PATCH"]),
]


async def _open_session(
    request: Request,
    model: str,
    offer_sdp: str,
    params: Mapping[str, object],
    credential: str | None,
) -> PeerSession:
    """Admit a session, apply the offer's params, answer the offer; undone on any error."""
    server = _server(request)
    # A peer that only receives video types its prompts: type-to-image.
    text_input = only_receives_video(offer_sdp)

    async def disconnected() -> None:
        # The body is read: the next ASGI message is the disconnect, whenever it comes.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    # The HTTP request itself waits in line when the server is full: no position updates,
    # and a client that gives up (disconnects) leaves the line at once.
    lease = await server.admit(
        model,
        "webrtc",
        credential,
        text_input=text_input,
        address=request.client.host if request.client else None,
        client_gone=disconnected,
    )
    live = LiveSession(lease, server.config.limits, text_input=text_input)
    peer = PeerSession(live, rtc_configuration(server.config.ice_servers), _forget(server))
    server.peers[peer.id] = peer
    try:
        live.session.update_params(params, time.perf_counter())
        await peer.answer(offer_sdp, server.ready)
    except BaseException:
        await peer.close()
        raise
    live.log.info("webrtc session for model %r", model)
    return peer


def only_receives_video(sdp: str) -> bool:
    """Whether the offer has video m-lines and every one is recvonly or inactive: a
    peer that watches generated video without sending a camera."""
    directions = []
    for section in sdp.split("\nm=")[1:]:
        if section.startswith("video"):
            found = [
                d for d in ("sendrecv", "sendonly", "recvonly", "inactive") if f"a={d}" in section
            ]
            directions.append(found[0] if found else "sendrecv")  # the SDP default
    return bool(directions) and all(d in ("recvonly", "inactive") for d in directions)


def _forget(server: ServerState) -> Any:
    def forget(peer: PeerSession) -> None:
        server.peers.pop(peer.id, None)

    return forget


def _credential(request: Request) -> str | None:
    return bearer(request.headers.get("authorization"))


def _server(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadMessage(f"not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise BadMessage("the body must be a JSON object")
    return parsed


def _not_found(what: str) -> JSONResponse:
    return JSONResponse(
        ErrorMessage(ErrorCode.NOT_FOUND, f"no such {what}").to_wire(),
        status_code=http_status(ErrorCode.NOT_FOUND),
    )


def _sdp_created(sdp: str, location: str) -> Response:
    return Response(sdp, status_code=201, media_type=SDP, headers={"Location": location})
