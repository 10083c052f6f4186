"""Test helpers: real servers on loopback (a `realtime serve` process through the
one harness, or an app in a thread when a test needs a model of its own) and
waiting for what only shows from outside. Sample images: `frames.samples`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from websockets.exceptions import ConnectionClosed

from frames.frame import Pixels
from models.base import ModelInput
from realtime.bench import harness
from realtime.bench.harness import ServerProcess, free_port
from realtime.clients.websocket import StreamClient
from realtime.server.config import Listen
from realtime.server.serving import uvicorn_config

PROTOCOL_DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def input_pixels(item: ModelInput) -> Pixels:
    """The frame a test model was given: the tests' models are image to image."""
    assert isinstance(item.pixels, np.ndarray), "an image-to-image model was given no frame"
    return item.pixels


class StartServer(Protocol):
    """The `start_server` fixture (conftest.py): `realtime serve ARGS`, ready, until the
    test session ends."""

    def __call__(self, *args: str) -> ServerProcess: ...


@contextmanager
def running_server(
    *args: str,
    cache: Path,
    port: int | None = None,
    ice_addresses: Sequence[str] = ("127.0.0.1",),
) -> Iterator[ServerProcess]:
    """`realtime serve ARGS` (the harness's), offline, with `cache` as REALTIME_CACHE."""
    env = {"REALTIME_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    with harness.running_server(*args, env=env, port=port, ice_addresses=ice_addresses) as server:
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


def doc_table(heading: str) -> list[list[str]]:
    """The rows (cells stripped of backticks) of the first table after `heading` in
    docs/protocol.md, which tests check against the code so that the two cannot drift."""
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1]
    rows: list[list[str]] = []
    for line in section.splitlines():
        if rows and not line.startswith("|"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows[1:]  # without the header


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """For state only observable from outside (a process, a port): bounded polling."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def serve_usage_error(*args: str) -> str:
    """`realtime serve ARGS`, which must refuse its arguments (exit 2): what it said."""
    refused = subprocess.run(
        [sys.executable, "-m", "realtime", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2, refused.stderr
    return refused.stderr


async def closed_with(client: StreamClient) -> tuple[int, str]:
    """Read a session to its end: the close code and reason the server sent."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(client.receive(), 30)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def eventually(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """`wait_until` for async tests: polls in a thread, so the event loop runs meanwhile."""
    await asyncio.to_thread(wait_until, condition, what, timeout)
