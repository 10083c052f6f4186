"""A worker per device (`--devices`), with CPU workers standing in for GPUs: sessions
spread evenly over a model's workers, stay pinned to theirs, and a worker that
restarts its model touches only its own sessions."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from contextlib import AsyncExitStack

import httpx
import pytest
from faulty_models import Loader
from support import StartServer, eventually, serve_app, serve_usage_error

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.clients.websocket import ErrorMessage, FrameOutput, StreamClient
from realtime.server.app import create_app
from realtime.server.config import ServerConfig


def worker_metric(url: str, name: str, worker: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f"{name}{{") and f'worker="{worker}"' in line:
            assert 'device="cpu"' in line, line
            return float(line.split()[-1])
    raise AssertionError(f"no {name} for {worker}")


@pytest.mark.asyncio
async def test_sessions_spread_evenly_over_the_devices_and_stay_pinned(
    start_server: StartServer,
) -> None:
    server = start_server("--model", "invert", "--devices", "cpu,cpu,cpu", "--max-sessions", "9")
    frame = encode_image(gradient_image(), "jpeg")
    async with AsyncExitStack() as sessions:
        clients = [
            await sessions.enter_async_context(await StreamClient.connect(server.ws_url))
            for _ in range(6)
        ]
        placements = Counter((client.ready.worker, client.ready.device) for client in clients)
        assert placements == {
            ("invert-0", "cpu"): 2,
            ("invert-1", "cpu"): 2,
            ("invert-2", "cpu"): 2,
        }
        health = httpx.get(f"{server.http_url}/healthz").json()
        assert [(w["name"], w["device"], w["sessions"]) for w in health["workers"]] == [
            ("invert-0", "cpu", 2),
            ("invert-1", "cpu", 2),
            ("invert-2", "cpu", 2),
        ]
        for client in clients:
            for _ in range(3):
                await client.send_frame(frame)
                assert isinstance(await asyncio.wait_for(client.receive(), 30), FrameOutput)
        # Each worker ran its own two sessions' frames, and only theirs.
        for name in ("invert-0", "invert-1", "invert-2"):
            assert worker_metric(server.http_url, "realtime_worker_sessions", name) == 2
            assert 3 <= worker_metric(server.http_url, "realtime_worker_batches_total", name) <= 6


@pytest.mark.asyncio
async def test_a_workers_restart_touches_only_its_own_sessions() -> None:
    config = ServerConfig(models=("faulty",), devices=("cpu", "cpu"))
    app = create_app(config, registry={"faulty": Loader().entry()})
    frame = encode_image(gradient_image(64, 64), "jpeg")
    with serve_app(app) as url:
        await eventually(lambda: httpx.get(f"{url}/healthz").status_code == 200, "healthz")
        ws_url = url.replace("http", "ws")
        async with (
            await StreamClient.connect(ws_url) as failing,
            await StreamClient.connect(ws_url) as bystander,
        ):
            assert (failing.ready.worker, bystander.ready.worker) == ("faulty-0", "faulty-1")
            await failing.update_params(fail=1)  # each of its batches raises
            codes = []
            for _ in range(6):
                await failing.send_frame(frame)
                error = await asyncio.wait_for(failing.receive(), 30)
                assert isinstance(error, ErrorMessage), error
                codes.append(error.code)
                await bystander.send_frame(frame)
                assert isinstance(await asyncio.wait_for(bystander.receive(), 30), FrameOutput)
            assert "model_restarted" in codes, codes
        assert worker_metric(url, "realtime_worker_restarts_total", "faulty-0") == 1
        assert worker_metric(url, "realtime_worker_restarts_total", "faulty-1") == 0


def test_devices_are_checked_before_serving() -> None:
    assert "must be auto, cpu, cuda or cuda:N" in serve_usage_error("--devices", "cpu,gpu")
    missing = subprocess.run(
        [sys.executable, "-m", "realtime", "serve", "--model", "invert", "--devices", "cuda:7"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1
    assert "there is no cuda:7" in missing.stderr
