"""Sessions through a `realtime cluster serve` proxy: which replica holds one, and a frame
through it."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import httpx
import numpy as np

from frames.codecs import encode_image
from frames.samples import noise_image
from realtime.clients.websocket import FrameOutput, StreamClient


def replica_health(http_url: str) -> dict[str, dict[str, Any]]:
    """The /healthz of each replica the proxy routes to, by replica id (the proxy picks
    which answers, so ask 20 times)."""
    seen = {}
    for _ in range(20):
        health = httpx.get(f"{http_url}/healthz", timeout=10).json()
        seen[health["workers"][0]["name"].partition("/")[0]] = health
    return seen


def instance(client: StreamClient) -> str:
    """The replica holding the session: its workers are named after it."""
    replica, _, worker = client.ready.worker.partition("/")
    assert worker == "invert-0", client.ready.worker
    return replica


async def inverted(client: StreamClient) -> None:
    """One frame through the session, inverted exactly (PNG in and out)."""
    image = noise_image()
    await client.send_frame(encode_image(image, "png"))
    output = await asyncio.wait_for(client.receive(), 30)
    assert isinstance(output, FrameOutput), output
    assert np.array_equal(output.pixels(), 255 - image)


async def open_sessions(url: str, count: int, stack: AsyncExitStack) -> list[StreamClient]:
    clients = []
    for _ in range(count):
        client = await asyncio.wait_for(StreamClient.connect(url), 60)
        clients.append(await stack.enter_async_context(client))
        await client.update_params(output_format="png")
    return clients
