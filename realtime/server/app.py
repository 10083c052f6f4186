"""The Starlette app: its lifespan loads and warms the models; its routes serve them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from models.base import ModelEntry, ModelInfo
from models.loading import resolve_devices
from models.registry import REGISTRY
from realtime.ice import restrict_host_candidates
from realtime.server.auth import Access, Scope, credential_of
from realtime.server.bodies import Endpoint, reads_body
from realtime.server.codec_threads import ENCODE_THREADS, CodecThreads
from realtime.server.config import ServerConfig
from realtime.server.fal import issue_fal_token
from realtime.server.fal import realtime_endpoint as fal_realtime
from realtime.server.loop_lag import measure_loop_lag
from realtime.server.metrics import Metrics
from realtime.server.origins import OpenServerGuard, cors
from realtime.server.responses import error_response
from realtime.server.session_resources import ROUTES as SESSION_ROUTES
from realtime.server.signalling import ROUTES as SIGNALLING_ROUTES
from realtime.server.state import ServerState
from realtime.server.tokens import issue_token
from realtime.server.websocket import stream_endpoint
from realtime.server.worker import ModelWorker
from session.errors import StreamError
from session.params import SessionParams
from session.pool import WorkerPool
from session.protocol import ErrorCode, ErrorMessage

logger = logging.getLogger("realtime.server.app")

WEB_DEMO = Path(__file__).resolve().parents[2] / "web_demo"


def create_app(
    config: ServerConfig | None = None,
    *,
    registry: Mapping[str, ModelEntry] = REGISTRY,
    on_load_failed: Callable[[], None] | None = None,
    warm_first: bool = False,
) -> Starlette:
    """Build the app. Models load in the background once it starts, so /healthz
    answers 503 meanwhile; `on_load_failed` is called if one cannot load. With
    `warm_first`, starting ends only once they are warm, and fails if one cannot load
    (a Ray Serve replica, which gets requests as soon as it has started)."""
    config = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        devices = resolve_devices(config.devices) * config.workers_per_model
        if config.ice_addresses:
            restrict_host_candidates(config.ice_addresses)
        workers = [
            ModelWorker(
                registry[model_id],
                device,
                name=f"{config.instance}/{model_id}-{n}" if config.instance else f"{model_id}-{n}",
                max_batch=config.max_batch,
            )
            for model_id in config.models
            for n, device in enumerate(devices)
        ]
        pool = WorkerPool(workers, config.max_sessions)
        access = Access(config.api_keys, config.token_secret)
        if access.is_open:
            logger.warning("no API key configured: anyone who can reach this server may use it")
        decoders = CodecThreads(config.decode_threads, "decode")
        encoders = CodecThreads(ENCODE_THREADS, "encode")
        metrics = Metrics(pool)
        state = ServerState(config, registry, pool, metrics, access, decoders, encoders)
        app.state.server = state
        for worker in workers:
            worker.start()
        loading = asyncio.create_task(_wait_until_loaded(state, on_load_failed))
        lag = asyncio.create_task(measure_loop_lag(state.metrics.loop_lag))
        try:
            if warm_first:
                await loading
                if state.load_error:
                    raise RuntimeError(state.load_error)
            yield
        finally:
            loading.cancel()
            lag.cancel()
            await asyncio.gather(*(peer.close() for peer in list(state.peers.values())))
            await asyncio.gather(*(asyncio.to_thread(worker.stop) for worker in workers))
            decoders.shutdown()
            encoders.shutdown()

    # Who may use what: docs/protocol.md's table. Sessions check their credential (and
    # the token's model) when admitted; /healthz and the web demo are public.
    api = [
        Route("/models", authorized(list_models, Scope.STREAM)),
        Route("/tokens", reads_body(issue_token), methods=["POST"]),
        WebSocketRoute("/stream", stream_endpoint),
        Route("/stream", upgrade_required),
        *SIGNALLING_ROUTES,
        *SESSION_ROUTES,
        WebSocketRoute("/{path:path}", websocket_not_found),
    ]
    routes = [
        Route("/healthz", healthz),
        Route("/metrics", authorized(metrics, Scope.OPERATE)),
        # Its own mount, so that a wrong method on an API path gets 405, not the web demo's 404.
        Mount("/v1", routes=api),
        # fal's clients (realtime/server/fal.py): where and how they connect.
        WebSocketRoute("/{app:path}/realtime", fal_realtime),
        Route("/{app:path}/realtime", upgrade_required),
        Route("/tokens/", reads_body(issue_fal_token), methods=["POST"]),
        WebSocketRoute("/{path:path}", websocket_not_found),
        Mount("/", StaticFiles(directory=WEB_DEMO, html=True), name="web_demo"),
    ]
    # With keys, credentials guard the server; without, only its own pages may use it.
    # CORS outermost: a listed origin can read every answer, refusals included.
    guard = Middleware(OpenServerGuard, origins=config.cors_origins, hosts=config.allowed_hosts)
    middleware = [*cors(config.cors_origins), *([] if config.api_keys else [guard])]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


async def _wait_until_loaded(state: ServerState, on_load_failed: Callable[[], None] | None) -> None:
    for worker in state.pool.workers:
        if not await asyncio.to_thread(worker.wait_loaded):
            state.load_error = f"model {worker.model_id!r} failed to load: {worker.load_error}"
            logger.error("%s", state.load_error)
            if on_load_failed is not None:
                on_load_failed()
            return
    state.ready.set()
    devices = sorted({worker.device for worker in state.pool.workers})
    logger.info("ready: serving %s on %s", ", ".join(state.pool.model_ids), ", ".join(devices))


async def healthz(request: Request) -> JSONResponse:
    """200 once every configured model is warm, 503 before (or after a failed load)."""
    state: ServerState = request.app.state.server
    status = "ok" if state.ready.is_set() else "failed" if state.load_error else "loading"
    body: dict[str, object] = {
        "status": status,
        "models": {worker.name: worker.is_loaded for worker in state.pool.workers},
        "workers": [
            {
                "name": worker.name,
                "model": worker.model_id,
                "device": worker.device,
                "loaded": worker.is_loaded,
                "sessions": state.pool.sessions_on(worker),
            }
            for worker in state.pool.workers
        ],
        "sessions": state.pool.session_count,
        "max_sessions": state.pool.max_sessions,
    }
    if state.load_error:
        body["error"] = state.load_error
    return JSONResponse(body, status_code=200 if status == "ok" else 503)


async def upgrade_required(request: Request) -> Response:
    """Plain HTTP on the WebSocket endpoint: 426, and how to connect instead."""
    hint = (
        f"{request.url.path} is a WebSocket endpoint: connect to it with a WebSocket client "
        f"(ws:// or wss://), see docs/protocol.md"
    )
    return JSONResponse(
        ErrorMessage(ErrorCode.BAD_MESSAGE, hint).to_wire(),
        status_code=426,
        headers={"Upgrade": "websocket", "Connection": "Upgrade"},
    )


async def websocket_not_found(websocket: WebSocket) -> None:
    """A WebSocket to a path that has none: 404 like HTTP's (starlette answers an empty
    403, which reads as a credential problem)."""
    message = f"no WebSocket endpoint at {websocket.url.path}; the stream is at /v1/stream"
    await websocket.send_denial_response(
        JSONResponse(ErrorMessage(ErrorCode.NOT_FOUND, message).to_wire(), status_code=404)
    )


def authorized(endpoint: Endpoint, scope: Scope) -> Endpoint:
    """The endpoint, behind a check for a credential that `scope` takes (when keys are set)."""

    async def guarded(request: Request) -> Response:
        state: ServerState = request.app.state.server
        try:
            state.authorize(credential_of(request.headers.get("authorization")), None, scope)
        except StreamError as error:
            return error_response(error)
        return await endpoint(request)

    return guarded


async def metrics(request: Request) -> Response:
    """GET /metrics: Prometheus text format."""
    state: ServerState = request.app.state.server
    return await state.metrics.endpoint(request)


async def list_models(request: Request) -> Response:
    state: ServerState = request.app.state.server
    loaded = {worker.model_id for worker in state.pool.workers if worker.is_loaded}
    return JSONResponse(
        [describe_model(entry.info, entry.info.id in loaded) for entry in state.registry.values()]
    )


def describe_model(info: ModelInfo, loaded: bool) -> dict[str, object]:
    params = SessionParams(info.params)
    return {
        "id": info.id,
        "description": info.description,
        "kind": info.kind,
        "width": info.width,
        "height": info.height,
        "text_to_image": info.text_to_image,
        "random_weights": info.random_weights,
        "takes_reference": info.takes_reference,
        "default_params": params.snapshot(),
        "params": {name: spec.describe() for name, spec in params.specs.items()},
        "loaded": loaded,
    }
