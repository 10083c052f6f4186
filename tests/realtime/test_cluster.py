"""`realtime cluster serve`: two Ray Serve replicas of `invert` on a Ray instance the
command starts on this machine (loopback only), sessions through Ray Serve's proxy."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from cluster_sessions import instance, inverted, open_sessions, replica_health
from faulty_models import Loader
from support import closed_with, eventually
from websockets.exceptions import ConnectionClosed

from frames.samples import gradient_image
from realtime.bench.harness import ClusterProcess, running_cluster
from realtime.clients.webrtc import CameraTrack, RtcClient
from realtime.server.app import create_app
from realtime.server.config import ServerConfig
from session.protocol import CloseCode

SESSIONS_PER_REPLICA = 4
REPLICA = "ServeReplica:realtime:Replica"


@dataclass
class Cluster:
    server: ClusterProcess

    @property
    def ws_url(self) -> str:
        return self.server.ws_url

    @property
    def http_url(self) -> str:
        return self.server.http_url

    def sessions(self) -> set[int]:
        """Sessions on each replica, as their /healthz say."""
        seen = replica_health(self.http_url)
        assert len(seen) == 2, seen
        return {health["sessions"] for health in seen.values()}

    def replica_processes(self) -> list[psutil.Process]:
        return [
            child
            for child in psutil.Process(self.server.process.pid).children(recursive=True)
            if REPLICA in " ".join(child.cmdline())
        ]


@pytest.fixture(scope="module")
def cluster(model_cache: Path) -> Iterator[Cluster]:
    """2 replicas of `invert`, each holding 4 sessions, on a Ray instance of their own."""
    env = {"REALTIME_CACHE": str(model_cache), "HF_HUB_OFFLINE": "1"}
    args = ["--model", "invert", "--replicas", "2", "--replica-cpus", "0.5"]
    args += ["--max-sessions", str(SESSIONS_PER_REPLICA), "--decode-threads", "1"]
    with running_cluster(*args, env=env, startup_timeout_s=240) as server:
        yield Cluster(server)


@pytest.mark.asyncio
async def test_a_replicas_app_starts_once_its_models_are_warm() -> None:
    """`warm_first`: Serve sends a replica requests as soon as its app has started."""
    config = ServerConfig(models=("faulty",), devices=("cpu",))
    app = create_app(config, registry={"faulty": Loader().entry()}, warm_first=True)
    async with app.router.lifespan_context(app):
        assert app.state.server.ready.is_set()
    broken = Loader([RuntimeError("no weights here")])
    app = create_app(config, registry={"faulty": broken.entry()}, warm_first=True)
    with pytest.raises(RuntimeError, match="no weights here"):
        async with app.router.lifespan_context(app):
            pass


def test_a_model_that_cannot_load_fails_the_deployment(model_cache: Path) -> None:
    """Before the cluster of the tests below starts: one Ray instance at a time."""
    env = {"REALTIME_CACHE": str(model_cache), "HF_HUB_OFFLINE": "1"}
    args = ["--model", "invert", "--devices", "cuda:7", "--replica-cpus", "0.5"]
    with pytest.raises(RuntimeError) as failed, running_cluster(*args, env=env):
        pass
    assert "there is no cuda:7" in str(failed.value)
    assert "realtime cluster serve: Deploying application realtime failed" in str(failed.value)


@pytest.mark.asyncio
async def test_sessions_spread_over_the_replicas_and_stay_on_theirs(cluster: Cluster) -> None:
    async with AsyncExitStack() as stack:
        clients = await open_sessions(cluster.ws_url, 2 * SESSIONS_PER_REPLICA, stack)
        # A replica takes no more sessions than it holds: 4 each.
        spread = Counter(instance(client) for client in clients)
        assert sorted(spread.values()) == [SESSIONS_PER_REPLICA, SESSIONS_PER_REPLICA], spread
        for _ in range(3):
            for client in clients:
                await inverted(client)
        assert all(client.ready.device == "cpu" for client in clients)


@pytest.mark.asyncio
async def test_webrtc_signals_through_the_proxy_and_streams_from_the_replica(
    cluster: Cluster,
) -> None:
    image = gradient_image()
    offer = RtcClient.offer(cluster.http_url, camera=CameraTrack(image), model="invert")
    client = await asyncio.wait_for(offer, 60)
    try:
        assert client.ready is not None
        assert client.ready.worker.endswith("/invert-0")
        # The answer's candidates are the replica's own (--ice-address): media goes there.
        answer = client.pc.remoteDescription
        assert answer is not None
        candidates = [line for line in answer.sdp.splitlines() if line.startswith("a=candidate")]
        assert candidates
        assert all(" 127.0.0.1 " in line for line in candidates), candidates
        for _ in range(3):
            output = await asyncio.wait_for(client.next_frame(), 30)
            assert np.abs(output.astype(int) - (255 - image.astype(int))).mean() < 6  # VP8
        # WHEP viewers of the session reach its replica, whichever the proxy would pick.
        assert client.session_id is not None
        assert client.session_id.startswith(client.ready.worker.split("/")[0] + ".")
        async with AsyncExitStack() as viewers:
            for _ in range(4):
                viewing = RtcClient.whep(cluster.http_url, client.session_id)
                viewer = await asyncio.wait_for(viewing, 60)
                viewers.push_async_callback(viewer.close)
                output = await asyncio.wait_for(viewer.next_frame(), 30)
                assert np.abs(output.astype(int) - (255 - image.astype(int))).mean() < 6
        # So does its reference resource (invert takes none: clearing none is a 200).
        resource = f"{cluster.http_url}/v1/sessions/{client.session_id}/reference"
        for _ in range(4):
            assert (await asyncio.to_thread(httpx.delete, resource)).status_code == 200
    finally:
        await client.close()
    await eventually(lambda: cluster.sessions() == {0}, "the session to end")


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's, when imported
async def test_new_webrtc_sessions_go_to_replicas_with_room(cluster: Cluster) -> None:
    """A WebRTC session's requests end with the answer, so Serve's count of a replica's
    requests misses it; the replicas' own count of free slots (their routing stats,
    every second) keeps offers away from a full one."""
    from realtime.cluster.replica import ROUTING_STATS_PERIOD_S

    peers: list[RtcClient] = []
    try:
        for _ in range(2 * SESSIONS_PER_REPLICA):
            camera = CameraTrack(gradient_image(64, 64), fps=5)
            offer = RtcClient.offer(cluster.http_url, camera=camera, model="invert")
            peers.append(await asyncio.wait_for(offer, 60))  # not refused: 503
            await asyncio.sleep(2 * ROUTING_STATS_PERIOD_S)  # the routers hear of it
        spread = Counter(peer.ready.worker.split("/")[0] for peer in peers if peer.ready)
        assert sorted(spread.values()) == [SESSIONS_PER_REPLICA, SESSIONS_PER_REPLICA], spread
    finally:
        await asyncio.gather(*(peer.close() for peer in peers))
    await eventually(lambda: cluster.sessions() == {0}, "the sessions to end")


@pytest.mark.asyncio
async def test_a_dead_replicas_sessions_close_and_new_ones_go_elsewhere(
    cluster: Cluster,
) -> None:
    async with AsyncExitStack() as stack:
        clients = await open_sessions(cluster.ws_url, 2 * SESSIONS_PER_REPLICA, stack)
        replicas = cluster.replica_processes()
        assert len(replicas) == 2, replicas
        replicas[0].kill()
        replicas[0].wait(30)
        # One replica's sessions all close with 1012; the other's go on, exactly as before.
        lost: dict[str, list[tuple[int, str]]] = {}
        survived: list[str] = []
        for client in clients:
            try:
                await inverted(client)
                survived.append(instance(client))
            except ConnectionClosed:
                lost.setdefault(instance(client), []).append(await closed_with(client))
        assert len(lost) == 1, (lost, survived)
        [(dead, closes)] = lost.items()
        assert closes == [(CloseCode.SERVICE_RESTART, "replica_lost")] * SESSIONS_PER_REPLICA
        assert len(survived) == SESSIONS_PER_REPLICA
        assert dead not in survived
        for client in clients:
            if instance(client) != dead:
                await client.close()
        # New sessions go to a live replica.
        newcomers = await open_sessions(cluster.ws_url, 2, stack)
        for client in newcomers:
            assert instance(client) != dead
            await inverted(client)


# Ray's own modules use pydantic's deprecated features when imported.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_replica_options_are_serves() -> None:
    """The flags' deployment options, as Serve takes them (no cluster needed)."""
    from ray import serve

    from realtime.cluster.replica import Replica, Replicas

    fixed = Replicas(count=3, num_gpus=1.0).options(max_sessions=8)
    assert fixed["num_replicas"] == 3 and fixed["max_ongoing_requests"] == 8
    assert fixed["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1.0}
    scaled = Replicas(min_count=2, max_count=10).options(max_sessions=8)
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"] == {
        "min_replicas": 2,
        "max_replicas": 10,
        "target_ongoing_requests": 4.0,
    }
    for options in (fixed, scaled):
        deployment = serve.deployment(**options)(Replica)
        assert deployment.max_ongoing_requests == 8


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--min-replicas", "3", "--max-replicas", "2"], "--max-replicas must be at least"),
        (["--autoscale", "upscale_delay_s=1"], "--autoscale needs --max-replicas"),
        (["--max-replicas", "2", "--autoscale", "soon"], "expected KEY=VALUE, got 'soon'"),
        (["--max-replicas", "2", "--autoscale", "bogus=1"], "--autoscale bogus: Ray Serve's"),
        (["--max-replicas", "2", "--autoscale", "max_replicas=3"], "with its own flag"),
        (["--max-replicas", "2", "--autoscale", "upscale_delay_s=x"], "upscale_delay_s"),
    ],
)
def test_cluster_serve_checks_its_replica_options(options: list[str], error: str) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "realtime", "cluster", "serve", "--model", "invert", *options],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2, refused.stderr
    assert error in refused.stderr
