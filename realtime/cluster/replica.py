"""The Ray Serve deployment: each replica runs the same Starlette app (`create_app`)
with its own workers, behind Ray Serve's HTTP proxy.

A replica takes at most `max_sessions` requests at once (`max_ongoing_requests`), and a
WebSocket is one request for its whole life on the replica that accepted it, so the
proxy hands a new WebSocket session only to a replica with a free slot. The app's
lifespan (loading and warming the models, the workers) runs once per replica, when
Serve starts it, and Serve sends it requests once its models are warm.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ray import serve
from starlette.applications import Starlette

from models.base import ModelEntry
from models.registry import REGISTRY
from realtime.cluster import proxy
from realtime.server.app import create_app
from realtime.server.config import ServerConfig

APP_NAME = "realtime"


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
    """On scale-down or redeploy, how long a replica's sessions may go on before it
    is stopped."""

    def options(self, max_sessions: int) -> dict[str, Any]:
        """The deployment's options, for a replica that holds `max_sessions`."""
        options: dict[str, Any] = {
            "max_ongoing_requests": max_sessions,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "graceful_shutdown_timeout_s": self.shutdown_timeout_s,
            # A session's WHIP and WHEP requests go to its replica (proxy.py).
            "request_router_config": {"request_router_class": proxy.ROUTER},
        }
        if self.max_count is None:
            options["num_replicas"] = self.count
        else:
            options["autoscaling_config"] = {
                "min_replicas": self.min_count,
                "max_replicas": self.max_count,
                "target_ongoing_requests": self.target_sessions or max(1.0, max_sessions / 2),
            }
        return options


@serve.ingress()
class Replica:
    """One replica: its app, built on the replica for the config and models given."""

    def __init__(self, config: ServerConfig, entries: Mapping[str, ModelEntry]) -> None:
        self._config = config
        self._registry = {**REGISTRY, **entries}

    def __serve_build_asgi_app__(self) -> Starlette:
        # Named after the replica, so that `ready` and /healthz say which holds a session.
        instance = serve.get_replica_context().replica_id.unique_id
        config = dataclasses.replace(self._config, instance=instance)
        return create_app(config, registry=self._registry, warm_first=True)


def application(
    config: ServerConfig, entries: Mapping[str, ModelEntry], replicas: Replicas
) -> serve.Application:
    """The Serve application, for `serve.run`."""
    deployment = serve.deployment(**replicas.options(config.max_sessions))(Replica)
    return deployment.bind(config, dict(entries))
