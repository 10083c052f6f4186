"""GET /metrics on a real server, after real sessions."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import StartServer, eventually, wait_until

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.websocket import FrameOutput, ServerError, StreamClient

Key = tuple[str, tuple[tuple[str, str], ...]]


def key(name: str, **labels: str) -> Key:
    return name, tuple(sorted(labels.items()))


def scrape(server: ServerProcess) -> dict[Key, float]:
    text = httpx.get(f"{server.http_url}/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.asyncio
async def test_metrics_count_sessions_frames_hops_workers_and_refusals(
    start_server: StartServer,
) -> None:
    server: ServerProcess = start_server("--model", "invert")
    labels = {"model": "invert", "transport": "websocket"}
    async with await StreamClient.connect(server.ws_url) as client:
        for _ in range(3):
            await client.send_frame(encode_image(gradient_image(), "jpeg"))
            assert isinstance(await asyncio.wait_for(client.receive(), 30), FrameOutput)
        await client.send_frame(b"not an image")
        await asyncio.wait_for(client.receive(), 30)
        with pytest.raises(ServerError):
            await StreamClient.connect(server.ws_url, model="nope")
        during = scrape(server)
    assert during[key("realtime_sessions", **labels)] == 1
    assert during[key("realtime_frames_total", **labels, outcome="received")] == 4
    assert during[key("realtime_frames_total", **labels, outcome="sent")] == 3
    assert during[key("realtime_frames_total", **labels, outcome="bad")] == 1
    for hop in ("decode", "queue", "model", "encode"):
        assert during[key("realtime_hop_seconds_count", hop=hop, model="invert")] == 3
    assert during[key("realtime_refusals_total", reason="unknown_model")] == 1
    worker = {"model": "invert", "worker": "invert-0", "device": "cpu"}
    assert during[key("realtime_worker_batches_total", **worker)] == 3
    assert during[key("realtime_worker_busy_seconds_total", **worker)] > 0
    assert during[key("realtime_worker_restarts_total", **worker)] == 0
    sessions = key("realtime_sessions", **labels)
    await eventually(lambda: scrape(server)[sessions] == 0, "the close")


def test_the_event_loops_lag_is_a_histogram(start_server: StartServer) -> None:
    """A stalled event loop shows in realtime_event_loop_lag_seconds: the server process
    is stopped for 0.6 s (SIGSTOP), so the timer due meanwhile runs that much late."""
    server: ServerProcess = start_server("--model", "invert")

    def lag(bucket: str) -> float:
        return scrape(server)[key("realtime_event_loop_lag_seconds_bucket", le=bucket)]

    def count() -> float:
        return scrape(server)[key("realtime_event_loop_lag_seconds_count")]

    sampled = count()
    wait_until(lambda: count() >= sampled + 3, "the lag to be sampled")  # every 0.1 s
    stalls = lag("+Inf") - lag("0.25")
    os.kill(server.process.pid, signal.SIGSTOP)
    time.sleep(0.6)
    os.kill(server.process.pid, signal.SIGCONT)
    wait_until(lambda: lag("+Inf") - lag("0.25") >= stalls + 1, "the stall to be observed")
    assert scrape(server)[key("realtime_event_loop_lag_seconds_sum")] >= 0.3
