"""A `realtime serve` child process on loopback: the one harness that `realtime bench
--serve`, the benchmarks and the tests start servers with (and `running_cluster`, a
`realtime cluster serve` one).

    with running_server("--model", "invert") as server:
        ... server.http_url, server.ws_url, server.log, server.health() ...
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

STARTUP_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0


@dataclass
class ServerProcess:
    """A `realtime serve` child process and every line it logged (stdout and stderr)."""

    process: subprocess.Popen[str]
    port: int
    log: list[str] = field(default_factory=list)
    certfile: str | None = None
    """Its TLS certificate (`--ssl-certfile`): it serves https and wss, trusted through this."""

    @property
    def http_url(self) -> str:
        return f"{'https' if self.certfile else 'http'}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.certfile else 'ws'}://127.0.0.1:{self.port}"

    @property
    def is_ready(self) -> bool:
        """Listening, with its models warm (as its log says)."""
        return any("Uvicorn running on" in line for line in self.log) and any(
            "ready: serving" in line for line in self.log
        )

    def health(self) -> dict[str, Any]:
        """GET /healthz: status, models and open sessions; {} when it does not answer."""
        trusted = ssl.create_default_context(cafile=self.certfile) if self.certfile else None
        try:
            url = f"{self.http_url}/healthz"
            with urllib.request.urlopen(url, timeout=5, context=trusted) as response:
                health: dict[str, Any] = orjson.loads(response.read())
                return health
        except urllib.error.HTTPError as error:  # 503 while loading: the body says why
            with contextlib.suppress(orjson.JSONDecodeError):
                body: dict[str, Any] = orjson.loads(error.read())
                return body
            return {}
        except (urllib.error.URLError, OSError):
            return {}

    def wait_until_idle(self, timeout: float = 120.0) -> None:
        """Until no session holds a slot: the last run's sessions end once their frame
        in the model is done, so a slow model keeps them a while after they closed."""
        deadline = time.monotonic() + timeout
        while self.health().get("sessions", 0) and time.monotonic() < deadline:
            time.sleep(0.1)

    def rss_bytes(self) -> int:
        return rss_bytes(self.process.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (the server drains its sessions), SIGKILL after `timeout` seconds."""
        terminate(self.process, timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def running_server(
    *serve_args: str,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    log_file: Path | None = None,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ice_addresses: Sequence[str] = ("127.0.0.1",),
) -> Iterator[ServerProcess]:
    """`realtime serve SERVE_ARGS` on 127.0.0.1 at `port` (default: a free one), WebRTC
    candidates on `ice_addresses` only (none: the server's default), with `env` added
    to this process's environment and its log also written to `log_file`; entered once
    it is listening with its models warm, stopped (drained) on exit. With
    `--ssl-certfile CERT` in SERVE_ARGS its URLs are https and wss, trusting CERT."""
    port = port or free_port()
    command = [sys.executable, "-m", "realtime", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), *serve_args]
    command += [option for address in ice_addresses for option in ("--ice-address", address)]
    process = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    options = dict(itertools.pairwise(serve_args))  # each arg and the next
    certfile = options.get("--ssl-certfile")
    server = ServerProcess(process, port, certfile=certfile)
    ready = threading.Event()
    with contextlib.ExitStack() as stack:
        copy = stack.enter_context(log_file.open("w")) if log_file is not None else None
        threading.Thread(target=_follow_log, args=(server, ready, copy), daemon=True).start()
        try:
            _wait_until_ready(server, ready, startup_timeout_s)
            yield server
        finally:
            server.stop()


@dataclass
class ClusterProcess(ServerProcess):
    """A `realtime cluster serve` child process, leading a process group with the Ray
    instance it started; `port` is the Serve proxy's."""

    ray_folder: str = ""

    @property
    def is_ready(self) -> bool:
        """Its replicas started, with their models warm (as its log says)."""
        return any("realtime cluster serve: serving at" in line for line in self.log)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (it removes its deployment and stops Ray), then SIGKILL to whatever
        of its process group is left (Ray's processes, replacement replicas included)."""
        super().stop(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        shutil.rmtree(self.ray_folder, ignore_errors=True)


@contextlib.contextmanager
def running_cluster(
    *serve_args: str,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ice_addresses: Sequence[str] = ("127.0.0.1",),
) -> Iterator[ClusterProcess]:
    """`realtime cluster serve SERVE_ARGS` with a Ray instance of its own on this machine
    (in a fresh folder, no usage stats), the Serve proxy on 127.0.0.1 at `port` (default:
    a free one), WebRTC candidates on `ice_addresses`; entered once it serves, stopped
    with all of Ray on exit."""
    port = port or free_port()
    # Short: Ray's socket paths must fit in 107 bytes.
    ray_folder = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    command = [sys.executable, "-m", "realtime", "cluster", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), *serve_args]
    command += [option for address in ice_addresses for option in ("--ice-address", address)]
    ray_env = {"RAY_TMPDIR": ray_folder, "RAY_USAGE_STATS_ENABLED": "0"}
    process = subprocess.Popen(
        command,
        env={**os.environ, **ray_env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    cluster = ClusterProcess(process, port, ray_folder=ray_folder)
    ready = threading.Event()
    threading.Thread(target=_follow_log, args=(cluster, ready, None), daemon=True).start()
    try:
        if not ready.wait(startup_timeout_s) or not cluster.is_ready:
            tail = "\n".join(cluster.log[-80:])
            raise RuntimeError(f"realtime cluster serve did not start:\n{tail}")
        yield cluster
    finally:
        cluster.stop()


def _follow_log(server: ServerProcess, ready: threading.Event, copy: IO[str] | None) -> None:
    assert server.process.stdout is not None
    with contextlib.suppress(ValueError):  # the pipe closed by `stop`
        for line in server.process.stdout:
            server.log.append(line.rstrip("\n"))
            if copy is not None and not copy.closed:
                copy.write(line)
            if not ready.is_set() and server.is_ready:  # is_ready reads the whole log
                ready.set()
    ready.set()  # it exited


def _wait_until_ready(server: ServerProcess, ready: threading.Event, timeout: float) -> None:
    # The log says when models are warm and uvicorn listens, unless the serve args quiet
    # it (--log-level warning): then /healthz does.
    deadline = time.monotonic() + timeout
    while not ready.wait(0.5):
        if time.monotonic() > deadline or server.process.poll() is not None:
            break
        if server.health().get("status") == "ok":
            return
    if server.process.poll() is not None or not server.is_ready:
        tail = "\n".join(server.log[-80:])
        raise RuntimeError(f"realtime serve did not start:\n{tail}")


def rss_bytes(pid: int) -> int:
    """The resident memory of process `pid` (Linux: /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process `pid` has used (Linux: /proc)."""
    # Fields 14 and 15 of /proc/PID/stat, counted after the command's closing parenthesis.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def terminate(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM (a server drains its sessions on it), then SIGKILL after `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
