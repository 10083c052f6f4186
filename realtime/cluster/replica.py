"""The Ray Serve deployment: each replica runs the same Starlette app (`create_app`)
with its own workers, behind Ray Serve's HTTP proxy.

A replica takes at most `max_sessions` requests at once (`max_ongoing_requests`), and a
WebSocket is one request for its whole life on the replica that accepted it, so the
proxy hands a new WebSocket session only to a replica with a free slot. The app's
lifespan (loading and warming the models, the workers) runs once per replica, when
Serve starts it, and Serve sends it requests once its models are warm.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from ray import serve
from ray.serve._private.common import ReplicaID
from starlette.applications import Starlette

from models.base import ModelEntry
from models.registry import REGISTRY
from realtime.cluster import proxy
from realtime.cluster.drain import until_stopping
from realtime.server.app import create_app
from realtime.server.config import ServerConfig
from realtime.server.state import ServerState

APP_NAME = "realtime"
DRAIN_MARGIN_S = 1.0
"""Of a replica's `shutdown_timeout_s`, what its drain leaves for Serve to notice that
its sessions have ended and stop it before the deadline."""

ROUTING_STATS_PERIOD_S = 1.0

logger = logging.getLogger("realtime.cluster.replica")


@dataclass(frozen=True, slots=True)
class Replicas:
    """How many replicas and what each takes: `count` of them, or as many as the
    autoscaler wants between `min_count` and `max_count` (when that is set)."""

    count: int = 1
    min_count: int = 1
    max_count: int | None = None
    target_sessions: float | None = None
    """Ongoing requests (sessions, mostly) per replica the autoscaler aims at; None:
    half of `max_sessions`."""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    shutdown_timeout_s: float = 10.0
    """On scale-down or redeploy, how long a replica has to drain its sessions before
    it is stopped."""
    autoscaling: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """More of Serve's autoscaling_config (upscale_delay_s, downscale_delay_s, ...)."""

    def options(self, max_sessions: int) -> dict[str, Any]:
        """The deployment's options, for a replica that holds `max_sessions`."""
        options: dict[str, Any] = {
            "max_ongoing_requests": max_sessions,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "graceful_shutdown_timeout_s": self.shutdown_timeout_s,
            # How often Serve looks whether a draining replica's sessions have ended.
            "graceful_shutdown_wait_loop_s": 0.5,
            # A session's WHIP and WHEP requests go to its replica (proxy.py).
            "request_router_config": {
                "request_router_class": proxy.ROUTER,
                # How fresh the routers' count of each replica's free slots is (proxy.py).
                "request_routing_stats_period_s": ROUTING_STATS_PERIOD_S,
            },
        }
        if self.max_count is None:
            options["num_replicas"] = self.count
        else:
            options["autoscaling_config"] = {
                "min_replicas": self.min_count,
                "max_replicas": self.max_count,
                "target_ongoing_requests": self.target_sessions or max(1.0, max_sessions / 2),
                **self.autoscaling,
            }
        return options


@serve.ingress()
class Replica:
    """One replica: its app, built on the replica for the config and models given."""

    def __init__(
        self, config: ServerConfig, entries: Mapping[str, ModelEntry], drain_timeout_s: float
    ) -> None:
        self._config = config
        self._registry = {**REGISTRY, **entries}
        self._drain_timeout_s = drain_timeout_s
        self._state: ServerState | None = None

    def __serve_build_asgi_app__(self) -> Starlette:
        replica = serve.get_replica_context().replica_id
        # Named after the replica, so that `ready` and /healthz say which holds a session.
        config = dataclasses.replace(self._config, instance=replica.unique_id)
        app = create_app(config, registry=self._registry, warm_first=True)
        serving = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with serving(app):
                self._state = app.state.server
                watch = asyncio.create_task(self._drain_when_stopped(app.state.server, replica))
                try:
                    yield
                finally:
                    watch.cancel()

        app.router.lifespan_context = lifespan
        return app

    def record_routing_stats(self) -> dict[str, int]:
        """For the routers (proxy.SessionRouter): the sessions this replica has room for.
        Its WebRTC sessions are not requests, so Serve's own count misses them."""
        if self._state is None:
            return {}
        pool = self._state.pool
        return {proxy.FREE_SESSIONS: pool.max_sessions - pool.session_count}

    async def _drain_when_stopped(self, state: ServerState, replica: ReplicaID) -> None:
        """Once Serve begins to stop this replica, its sessions hear `closing`, as on
        SIGTERM; Serve stops it once they have ended (or at its deadline)."""
        await until_stopping(replica)
        logger.info("Ray Serve is stopping this replica: draining its sessions")
        await state.drain(self._drain_timeout_s)


def application(
    config: ServerConfig, entries: Mapping[str, ModelEntry], replicas: Replicas
) -> serve.Application:
    """The Serve application, for `serve.run`."""
    deployment = serve.deployment(**replicas.options(config.max_sessions))(Replica)
    drain_timeout_s = max(0.0, replicas.shutdown_timeout_s - DRAIN_MARGIN_S)
    return deployment.bind(config, dict(entries), drain_timeout_s)
