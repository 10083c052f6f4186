"""Test helpers: real servers on loopback (a `realtime serve` process, or an
app in a thread when a test needs a model of its own) and test images."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from starlette.applications import Starlette

from frames.frame import Pixels
from realtime.bench import free_port, rss_bytes, terminate

STARTUP_TIMEOUT_S = 180


@dataclass
class ServerProcess:
    """A `realtime serve` child process and everything it logged."""

    process: subprocess.Popen[str]
    port: int
    log: list[str] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def is_ready(self) -> bool:
        """Listening, with its models warm."""
        return any("Uvicorn running on" in line for line in self.log) and any(
            "ready: serving" in line for line in self.log
        )

    def health(self) -> dict[str, Any]:
        """GET /healthz: status, models and the number of open sessions."""
        health: dict[str, Any] = httpx.get(f"{self.http_url}/healthz").json()
        return health

    def rss_bytes(self) -> int:
        return rss_bytes(self.process.pid)


@contextmanager
def running_server(*args: str, cache: Path, port: int | None = None) -> Iterator[ServerProcess]:
    """`realtime serve ARGS` on `port` (default: a free one), offline, with `cache` as
    REALTIME_CACHE; entered once the server logged that its models are warm."""
    port = port or free_port()
    command = [sys.executable, "-m", "realtime", "serve", "--port", str(port)]
    command += ["--ice-address", "127.0.0.1", *args]  # WebRTC peers on loopback only
    env = {**os.environ, "REALTIME_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    server = ServerProcess(process, port)
    ready = threading.Event()

    def follow_log() -> None:
        # Models may be warm before uvicorn listens, or after: wait for both.
        assert process.stdout is not None
        for line in process.stdout:
            server.log.append(line.rstrip("\n"))
            if server.is_ready:
                ready.set()
        ready.set()  # it exited

    threading.Thread(target=follow_log, daemon=True).start()
    try:
        ready.wait(STARTUP_TIMEOUT_S)
        if process.poll() is not None or not server.is_ready:
            raise RuntimeError("server did not start:\n" + "\n".join(server.log))
        yield server
    finally:
        stop(server)


def stop(server: ServerProcess) -> None:
    terminate(server.process, 15)
    if server.process.stdout is not None:
        server.process.stdout.close()


@contextmanager
def serve_app(app: Starlette, *, max_message_bytes: int = 2**20) -> Iterator[str]:
    """Run `app` under uvicorn in a thread, as `realtime serve` would; yields its http URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            ws="websockets-sansio",
            ws_max_size=max_message_bytes,
            ws_per_message_deflate=False,  # as `realtime serve` runs
            log_config=None,
            lifespan="on",
        )
    )
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
