"""Starting and stopping a real `realtime serve` with a diffusion model, as a new user
would: a port in use, SIGTERM or Ctrl-C while the model loads, and what the log says."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support import running_server, wait_until

from realtime.bench.harness import free_port, terminate

if TYPE_CHECKING:
    from family_builders import FamilyFolders

# sd-turbo's real architecture, built here with random weights: it takes seconds to
# build on a CPU, so a signal sent once the log says "loading model" arrives mid-load.
LOADING_SLOWLY = ("--model", "sd-turbo", "--random-weights", "--device", "cpu")
CRASHES = ("Traceback", "terminate called")
LIBRARY_NOTICES = (
    "requires torchvision",
    "were passed to AutoencoderTiny",
    "Expected types for vae",
)


@dataclass
class Serve:
    """A `realtime serve` child process and its output so far (stdout and stderr)."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def finish(self, timeout: float = 60.0) -> int:
        status = self.process.wait(timeout)
        self.reader.join(timeout)
        return status

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()


@contextmanager
def serve(*args: str, port: int, cache: Path) -> Iterator[Serve]:
    """`realtime serve ARGS` on 127.0.0.1:`port`, offline; killed if the test left it."""
    command = [sys.executable, "-m", "realtime", "serve", "--port", str(port), *args]
    env = {**os.environ, "REALTIME_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield Serve(process)
    finally:
        terminate(process, 5)
        assert process.stdout is not None
        process.stdout.close()


def test_a_port_in_use_is_one_line_and_exit_1_before_any_model_loads(model_cache: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with serve(*LOADING_SLOWLY, port=port, cache=model_cache) as server:
            status = server.finish()
    assert status == 1, server.output
    assert server.lines == [
        f"realtime serve: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


@pytest.mark.parametrize(("sig", "expected_status"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_while_the_model_loads_stops_the_server_cleanly(
    model_cache: Path, sig: signal.Signals, expected_status: int
) -> None:
    with serve(*LOADING_SLOWLY, port=free_port(), cache=model_cache) as server:
        wait_until(lambda: "loading model" in server.output, "the model to start loading", 120)
        server.process.send_signal(sig)
        status = server.finish()
    assert status == expected_status, server.output
    assert not any(crash in server.output for crash in CRASHES), server.output


def test_a_diffusion_server_logs_what_the_operator_needs_and_stops_with_0(
    model_cache: Path, family_folders: FamilyFolders
) -> None:
    with running_server(
        "--model", str(family_folders.sd), "--vae", str(family_folders.tiny_vae), cache=model_cache
    ) as server:
        pass
    log = "\n".join(server.log)
    assert "ready: serving" in log
    for notice in LIBRARY_NOTICES:
        assert notice not in log
    assert server.process.returncode == 0, log
