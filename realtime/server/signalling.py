"""WebRTC signalling over HTTP: a JSON offer/answer endpoint, WHIP ingest and WHEP egress.

    POST   /v1/webrtc/offer         {"sdp","type":"offer","model"?,"params"?} -> answer, session_id
    POST   /v1/whip?model=ID        application/sdp offer -> 201, answer, Location
    DELETE /v1/whip/{session_id}    ends the session (200 too once it ended by itself)
    POST   /v1/whep/{session_id}    application/sdp offer -> 201, answer, Location (a viewer)
    DELETE /v1/whep/{session_id}/{viewer_id}

Answers carry every ICE candidate (no trickle ICE), so PATCH on a WHIP or WHEP
resource is answered 405, as RFC 9725 asks of servers without trickle ICE.

A session is its owner's (the key whose credential opened it): its resources
answer anyone else as they answer an unknown id. Credentials are checked from the
headers before any body is read, and bodies are read up to the cap only (bodies.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from realtime.server.auth import Identity, credential_of
from realtime.server.bodies import read_body, reads_body
from realtime.server.live_session import LiveSession
from realtime.server.responses import error_response
from realtime.server.state import ClientGone, ServerState
from realtime.server.webrtc import PeerSession
from session.errors import BadMessage, NotFound, StreamError

SDP = "application/sdp"
JSON = "application/json"
CLIENT_GONE = 499
"""The status logged for an offer whose client left while it waited in line (nginx's
"client closed request"): nobody reads it."""


async def webrtc_offer(request: Request) -> Response:
    """POST /v1/webrtc/offer: the peer sends its camera and gets the generated video back."""
    server = server_of(request)
    # JSON only: a page on another site can post a form or text/plain without asking.
    if (not_json := _unless_content_type(request, JSON)) is not None:
        return not_json
    try:
        credential = _credential(request)
        if credential is not None:
            server.authorize(credential, None)  # before the body; its model is checked below
        # Without a header, a browser's token is in the body: read it, at most the cap.
        offer = _json_object(await read_body(request, server.config.max_body_bytes))
        sdp = offer.get("sdp")
        if offer.get("type") != "offer":
            raise BadMessage("'type' must be \"offer\"", field="type")
        if not isinstance(sdp, str):
            raise BadMessage("'sdp' must be the offer's SDP text", field="sdp")
        params = offer.get("params", {})
        if not isinstance(params, dict):
            raise BadMessage("'params' must be an object", field="params")
        token = offer.get("token")
        if token is not None and not isinstance(token, str):
            raise BadMessage("'token' must be a token from POST /v1/tokens", field="token")
        model = offer.get("model", server.config.default_model)
        peer = await _open_session(request, str(model), sdp, params, credential or token)
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
    if (not_sdp := _unless_content_type(request, SDP)) is not None:
        return not_sdp
    server = server_of(request)
    model = request.query_params.get("model", server.config.default_model)
    try:
        server.authorize(_credential(request), model)
        offer = await _read_sdp(request, server)
        peer = await _open_session(request, model, offer, {}, _credential(request))
    except StreamError as error:
        return error_response(error)
    except ClientGone:
        return Response(status_code=CLIENT_GONE)
    return _sdp_created(peer.pc.localDescription.sdp, f"/v1/whip/{peer.id}")


async def whip_session(request: Request) -> Response:
    """DELETE /v1/whip/{session_id} ends the session; PATCH (trickle ICE) is not supported."""
    if request.method == "PATCH":
        return Response(status_code=405, headers={"Allow": "DELETE"})
    try:
        peer = _owned_peer(request, "session")
    except NotFound as unknown:
        return _unless_ended(request, request.path_params["session_id"], unknown)
    except StreamError as error:
        return error_response(error)
    await peer.close()
    return Response(status_code=200)


async def whep(request: Request) -> Response:
    """POST /v1/whep/{session_id}: a viewer that watches a session's output."""
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Accept-Post": SDP, "Allow": "POST, OPTIONS"})
    if (not_sdp := _unless_content_type(request, SDP)) is not None:
        return not_sdp
    try:
        peer = _owned_peer(request, "session")
        offer = await _read_sdp(request, server_of(request))
        viewer_id, answer = await peer.add_viewer(offer, _peer_address(request))
    except StreamError as error:
        return error_response(error)
    return _sdp_created(answer, f"/v1/whep/{peer.id}/{viewer_id}")


async def whep_viewer(request: Request) -> Response:
    """DELETE /v1/whep/{session_id}/{viewer_id} ends that viewer."""
    if request.method == "PATCH":
        return Response(status_code=405, headers={"Allow": "DELETE"})
    try:
        peer = _owned_peer(request, "viewer")
        if request.path_params["viewer_id"] not in peer.viewers:
            raise NotFound("no such viewer")
    except NotFound as unknown:
        viewer = f"{request.path_params['session_id']}/{request.path_params['viewer_id']}"
        return _unless_ended(request, viewer, unknown)
    except StreamError as error:
        return error_response(error)
    await peer.remove_viewer(request.path_params["viewer_id"])
    return Response(status_code=200)


ROUTES = [  # mounted under /v1
    Route("/webrtc/offer", reads_body(webrtc_offer), methods=["POST"]),
    Route("/whip", reads_body(whip), methods=["POST", "OPTIONS"]),
    Route("/whip/{session_id}", whip_session, methods=["DELETE", "PATCH"]),
    Route("/whep/{session_id}", reads_body(whep), methods=["POST", "OPTIONS"]),
    Route("/whep/{session_id}/{viewer_id}", whep_viewer, methods=["DELETE", "PATCH"]),
]


def _owned_peer(request: Request, what: str) -> PeerSession:
    """The session in the path, when the caller opened it; else raise.

    The credential is checked first, so a caller without one learns nothing;
    a session another key opened answers the very 404 an unknown id does, so
    live ids cannot be told from unknown ones."""
    peer = server_of(request).peers.get(request.path_params["session_id"])
    owner = None if peer is None else peer.live.lease.owner
    owned = is_callers(request, owner, None if peer is None else peer.live.session.model.id)
    if peer is None or not owned:
        raise NotFound(f"no such {what}")
    return peer


def is_callers(request: Request, owner: Identity | None, model_id: str | None) -> bool:
    """Whether the caller is `owner` (None: nobody's). Raises for a bad credential,
    checked first whatever the answer, and for a token of a model other than `model_id`."""
    server = server_of(request)
    credential = _credential(request)
    if server.authorize(credential, None) != owner:
        return False
    server.authorize(credential, model_id)  # a token is for its model
    return True


def _unless_ended(request: Request, resource: str, unknown: NotFound) -> Response:
    """200 for a DELETE of the caller's own session or viewer that ended lately (its
    peer closed first: RFC 9725 teardown), else `unknown`'s 404: whatever ended is
    still another key's, and answers it as an unknown id does."""
    ended = server_of(request).ended.get(resource)
    try:
        owned = ended is not None and is_callers(request, ended.owner, ended.model_id)
    except StreamError as error:
        return error_response(error)
    return Response(status_code=200) if owned else error_response(unknown)


async def _open_session(
    request: Request,
    model: str,
    offer_sdp: str,
    params: Mapping[str, object],
    credential: str | None,
) -> PeerSession:
    """Admit a session, apply the offer's params, answer the offer; undone on any error."""
    server = server_of(request)
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
        address=_peer_address(request),
        client_gone=disconnected,
    )
    live = LiveSession(lease, server.config.limits, text_input=text_input)
    peer = PeerSession(live, server.config, _forget(server), _forget_viewer(server))
    server.peers[peer.id] = peer
    try:
        live.session.update_params(params, time.perf_counter())
        await peer.answer(offer_sdp, server.ready, _peer_address(request))
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
        server.ended.add(peer.id, peer.live.lease.owner, peer.live.session.model.id)

    return forget


def _forget_viewer(server: ServerState) -> Any:
    def forget(peer: PeerSession, viewer_id: str) -> None:
        server.ended.add(
            f"{peer.id}/{viewer_id}", peer.live.lease.owner, peer.live.session.model.id
        )

    return forget


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _credential(request: Request) -> str | None:
    return credential_of(request.headers.get("authorization"))


def _peer_address(request: Request) -> str | None:
    """The HTTP client's address: the peer's own candidates are checked against it."""
    return request.client.host if request.client is not None else None


def server_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state


def _unless_content_type(request: Request, expected: str) -> Response | None:
    """415 for a body that is not of the `expected` media type; None for one that is."""
    if _content_type(request) != expected:
        return error_response(
            BadMessage(f"Content-Type must be {expected}", field="content-type"), 415
        )
    return None


async def _read_sdp(request: Request, server: ServerState) -> str:
    """The SDP offer in the body, at most the cap."""
    try:
        return (await read_body(request, server.config.max_body_bytes)).decode()
    except UnicodeDecodeError:
        raise BadMessage("the SDP offer must be UTF-8 text", field="sdp") from None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadMessage(f"not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise BadMessage("the body must be a JSON object")
    return parsed


def _sdp_created(sdp: str, location: str) -> Response:
    return Response(sdp, status_code=201, media_type=SDP, headers={"Location": location})
