"""Over a real WebSocket: a model that keeps failing is reloaded and its sessions are
told; a model that runs out of memory fails only the frame that asked for too much."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import numpy as np
from faulty_models import BROKEN, Loader
from support import eventually, serve_app

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.clients.websocket import ErrorMessage, FrameOutput, Message, StreamClient
from realtime.server.app import create_app
from realtime.server.config import ServerConfig
from realtime.server.worker import ModelWorker

FRAME = encode_image(gradient_image(64, 64), "jpeg")


@asynccontextmanager
async def faulty_server(loader: Loader) -> AsyncIterator[tuple[str, ModelWorker]]:
    """A server of the faulty model, loaded by `loader`; yields its ws URL and its worker."""
    app = create_app(
        ServerConfig(models=("faulty",), devices=("cpu",)), registry={"faulty": loader.entry()}
    )
    with serve_app(app) as url:
        await eventually(lambda: httpx.get(f"{url}/healthz").status_code == 200, "healthz")
        yield url.replace("http", "ws"), app.state.server.pool.workers[0]


async def receive(client: StreamClient) -> Message:
    return await asyncio.wait_for(client.receive(), 30)


async def send_and_receive(client: StreamClient) -> Message:
    await client.send_frame(FRAME)
    return await receive(client)


def assert_inverted(output: Message) -> None:
    assert isinstance(output, FrameOutput), output
    expected = 255 - gradient_image(64, 64).astype(int)
    assert np.abs(output.pixels().astype(int) - expected).max() < 24  # JPEG, twice


async def test_a_model_that_keeps_failing_is_reloaded_and_its_sessions_told() -> None:
    gate = threading.Event()
    loader = Loader([BROKEN], gate)  # the first instance fails every frame; a reload mends it
    async with (
        faulty_server(loader) as (url, worker),
        await StreamClient.connect(url) as a,
        await StreamClient.connect(url) as b,
    ):
        for index in range(1, 5):
            error = await send_and_receive(a)
            assert error == ErrorMessage(
                "model_error", "RuntimeError: simulated model failure", None, index
            )
        await a.send_frame(FRAME)  # the fifth failure in a row: the worker reloads
        await asyncio.to_thread(loader.reloading.wait, 30)
        health = httpx.get(url.replace("ws", "http") + "/healthz").json()
        assert health["models"] == {"faulty-0": False}
        await b.send_frame(FRAME)  # waits in the worker through the reload
        await eventually(lambda: worker._pending, "b's frame to reach the worker")
        gate.set()

        told_a, told_b = await receive(a), await receive(b)
        for told, source_frame in ((told_a, 5), (told_b, 1)):
            assert isinstance(told, ErrorMessage)
            assert (told.code, told.source_frame) == ("model_restarted", source_frame)
            assert "failed 5 batches in a row" in told.message
            assert "reloaded" in told.message
        # Both sessions go on, on the fresh model.
        assert_inverted(await send_and_receive(a))
        assert_inverted(await send_and_receive(b))
        health = httpx.get(url.replace("ws", "http") + "/healthz").json()
        assert health["models"] == {"faulty-0": True}
    assert (loader.loads, worker.restarts) == (2, 1)


async def test_out_of_memory_fails_only_the_frame_that_asked_and_the_worker_goes_on() -> None:
    loader = Loader()
    async with (
        faulty_server(loader) as (url, worker),
        await StreamClient.connect(url) as greedy,
        await StreamClient.connect(url) as modest,
    ):
        await greedy.update_params(oom=1)
        # Sent together: whether or not they share a batch, only greedy's frame fails.
        await asyncio.gather(greedy.send_frame(FRAME), modest.send_frame(FRAME))
        error, output = await asyncio.gather(receive(greedy), receive(modest))
        assert isinstance(error, ErrorMessage)
        assert (error.code, error.source_frame) == ("out_of_memory", 1)
        assert error.message.startswith("OutOfMemoryError: CUDA out of memory")
        assert_inverted(output)
        # More than the restart limit: running out of memory does not restart the model.
        for index in range(2, 8):
            error = await send_and_receive(greedy)
            assert isinstance(error, ErrorMessage)
            assert (error.code, error.source_frame) == ("out_of_memory", index)
        assert_inverted(await send_and_receive(modest))
        await greedy.update_params(oom=0)
        assert_inverted(await send_and_receive(greedy))
    assert (loader.loads, worker.restarts) == (1, 0)
