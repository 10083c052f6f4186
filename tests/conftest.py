"""Shared fixtures: a model cache for the run and `realtime serve` processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import STARTUP_TIMEOUT_S, ServerProcess, free_port, stop


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One REALTIME_CACHE for the run, so the tiny model's weights are built once."""
    return tmp_path_factory.mktemp("realtime-cache")


@pytest.fixture(scope="session")
def start_server(model_cache: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start `realtime serve ARGS` on a free port; returns once it logged that it is ready."""
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        port = free_port()
        command = [sys.executable, "-m", "realtime", "serve", "--port", str(port), *args]
        env = {**os.environ, "REALTIME_CACHE": str(model_cache), "HF_HUB_OFFLINE": "1"}
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        server = ServerProcess(process, port)
        started.append(server)
        ready = threading.Event()

        def follow_log() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                server.log.append(line.rstrip("\n"))
                if "ready: serving" in line:
                    ready.set()
            ready.set()  # exited

        threading.Thread(target=follow_log, daemon=True).start()
        ready.wait(STARTUP_TIMEOUT_S)
        if process.poll() is not None or not any("ready: serving" in line for line in server.log):
            stop(server)
            raise RuntimeError("server did not start:\n" + "\n".join(server.log))
        return server

    yield start
    for server in started:
        stop(server)
