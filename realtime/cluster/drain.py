"""How a replica learns that Ray Serve has begun to stop it (scale-down, redeploy, the
application's removal), so that it can drain its sessions as SIGTERM does for the plain
server: `closing`, the frame in the model, then the close.

Serve gives a replica's own code no such notice: it stops routing to the replica, waits
for the requests it holds (a WebSocket is one for its whole life) up to
`graceful_shutdown_timeout_s`, and only then calls the destructor. What it does do is
tell every router, over the controller's long poll, which replicas are running; a
replica that was among them and no longer is, is being stopped. This module listens to
the same broadcast (the routers' LongPollClient, Serve's private API: pinned with the
`cluster` extra's Ray version).
"""

from __future__ import annotations

import asyncio

import ray
from ray.serve._private.common import DeploymentTargetInfo, ReplicaID
from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE
from ray.serve._private.long_poll import LongPollClient, LongPollNamespace


async def until_stopping(replica: ReplicaID) -> None:
    """Returns once Serve no longer routes to `replica`, having done so before, or
    once its deployment is gone."""
    stopping = asyncio.Event()
    was_running = False

    def on_targets(targets: DeploymentTargetInfo) -> None:
        nonlocal was_running
        running = any(info.replica_id == replica for info in targets.running_replicas)
        if (was_running and not running) or not targets.is_available:
            stopping.set()
        was_running = running

    controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    key = (LongPollNamespace.DEPLOYMENT_TARGETS, replica.deployment_id)
    listener = LongPollClient(
        controller,
        # Serve's own routers use this key too; LongPollClient's type names only str keys.
        {key: on_targets},  # type: ignore[dict-item]
        call_in_event_loop=asyncio.get_running_loop(),
        client_id=f"realtime-drain:{replica.unique_id}",
    )
    try:
        await stopping.wait()
    finally:
        listener.stop()
