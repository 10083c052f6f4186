"""Minting tokens: `POST /v1/tokens` (for a model) here, and fal's `POST /tokens/` (for
fal apps, realtime/server/fal.py), on the same checks: a key, a capped JSON body, a
bounded lifetime."""

from __future__ import annotations

import time

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from realtime.server.auth import DEFAULT_TOKEN_TTL_S, Identity, Scope, credential_of, model_grant
from realtime.server.bodies import read_body
from realtime.server.responses import error_response
from realtime.server.state import ServerState
from session.errors import BadMessage, StreamError, UnknownModel


async def token_request(request: Request) -> tuple[Identity, dict[str, object]]:
    """Who asks for a token (a key: a token cannot mint tokens), and the JSON object
    they sent; read only once the key is checked."""
    state: ServerState = request.app.state.server
    identity = state.authorize(
        credential_of(request.headers.get("authorization")), None, Scope.OPERATE
    )
    try:
        body = orjson.loads(await read_body(request, state.config.max_body_bytes) or b"{}")
    except orjson.JSONDecodeError as error:
        raise BadMessage(f"not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadMessage("the body must be a JSON object")
    return identity, body


def lifetime(body: dict[str, object], name: str, state: ServerState) -> float:
    """The token lifetime that `body[name]` asks for, in seconds, within the server's cap."""
    ttl = body.get(name, DEFAULT_TOKEN_TTL_S)
    most = state.config.max_token_ttl_s
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= most:
        raise BadMessage(f"{name} must be a number of seconds in (0, {most:g}]", field=name)
    return float(ttl)


async def issue_token(request: Request) -> Response:
    """POST /v1/tokens {"model": ID, "ttl": seconds?} with a key: a token for browsers."""
    state: ServerState = request.app.state.server
    try:
        identity, body = await token_request(request)
        model = body.get("model", state.config.default_model)
        if model not in state.pool.model_ids:
            raise UnknownModel(f"model {model!r} is not served here", field="model")
        ttl = lifetime(body, "ttl", state)
    except StreamError as error:
        return error_response(error)
    assert isinstance(model, str)
    now = time.time()
    token = state.access.issue_token(identity, [model_grant(model)], ttl, now)
    return JSONResponse({"token": token, "model": model, "expires_at": now + ttl})
