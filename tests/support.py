"""Test helpers: real servers on loopback (a `realtime serve` process through the
one harness, or an app in a thread when a test needs a model of its own) and test
images."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import uvicorn
from starlette.applications import Starlette

from frames.frame import Pixels
from realtime.bench import harness
from realtime.bench.harness import ServerProcess, free_port
from realtime.server.serving import Listen, uvicorn_config


@contextmanager
def running_server(*args: str, cache: Path, port: int | None = None) -> Iterator[ServerProcess]:
    """`realtime serve ARGS` (the harness's), offline, with `cache` as REALTIME_CACHE."""
    env = {"REALTIME_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    with harness.running_server(*args, env=env, port=port) as server:
        yield server


@contextmanager
def serve_app(app: Starlette, *, max_message_bytes: int = 2**20) -> Iterator[str]:
    """Run `app` under uvicorn in a thread, as `realtime serve` would; yields its http URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, Listen(port=port), max_message_bytes))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """For state only observable from outside (a process, a port): bounded polling."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


async def eventually(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """`wait_until` for async tests: polls in a thread, so the event loop runs meanwhile."""
    await asyncio.to_thread(wait_until, condition, what, timeout)


def gradient_image(width: int = 256, height: int = 256, seed: int = 0) -> Pixels:
    """A smooth colourful image: JPEG keeps it within a few levels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phases = rng.uniform(0, 2 * np.pi, 3)
    channels = [
        127.5 + 110 * np.sin(x / width * 2 * np.pi + phases[c]) * np.cos(y / height * np.pi + c)
        for c in range(3)
    ]
    return np.stack(channels, axis=-1).clip(0, 255).astype(np.uint8)


def noise_image(width: int = 256, height: int = 256, seed: int = 0) -> Pixels:
    """Incompressible pixels: the largest encoded frames for their size."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
