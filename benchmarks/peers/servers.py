"""The servers: the peer venv (aiortc, aiohttp, fastrtc from PyPI), each server in its
own process on a free loopback port, and the CPU time of its process tree."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtime.bench.harness import free_port, running_server, terminate

PEERS = Path(__file__).resolve().parent
"""The peer server scripts' folder."""
DEFAULT_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "realtime-peers/venv"
)
REQUIRED = ["aiortc==1.16.0", "aiohttp==3.14.5"]  # aiortc as in the project's venv
OPTIONAL = ["fastrtc==0.0.34"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVERS = ("ours", "aiortc", "fastrtc")


def peer_venv(path: Path) -> tuple[Path, str | None]:
    """The peer venv's python, made and filled if needed, and a note if fastrtc is missing."""
    python = path / "bin/python"
    stamp = path / "peers-requirements.json"
    wanted = json.dumps({"required": REQUIRED, "optional": OPTIONAL})
    if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
        print(f"making the peer venv {path} (aiortc, aiohttp, fastrtc from PyPI)", flush=True)
        venv.EnvBuilder(clear=True, with_pip=True).create(path)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *REQUIRED], check=True)
        optional = subprocess.run([*pip, *OPTIONAL], capture_output=True, text=True)
        (path / "fastrtc-install.log").write_text(optional.stdout + optional.stderr)
        stamp.write_text(wanted)
    check = subprocess.run([str(python), "-c", "import fastrtc"], capture_output=True, text=True)
    if check.returncode != 0:
        tail = check.stderr.strip().splitlines()[-1:] or ["?"]
        return python, f"fastrtc skipped: it does not install or import here ({tail[0]})"
    return python, None


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` (with its reaped children) and of its live descendants."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(entry.name)
        parents[child] = int(fields[1])
        # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the name
        times[child] = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
    total = 0.0
    for candidate, seconds in times.items():
        ancestor = candidate
        while ancestor not in (pid, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == pid:
            total += seconds
    return total


@dataclass
class Server:
    name: str
    url: str
    pid: int
    inverted: bool
    offer: Callable[[str], Any]  # the offer SDP -> the answer SDP (a coroutine)
    note: str = ""
    after_answer: Callable[[], Any] | None = None


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server not listening after {seconds:g} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def peer_process(python: Path, script: str, logs: Path) -> Iterator[tuple[int, int]]:
    """A peer server script under the peer venv's python; yields its port and pid."""
    port = free_port()
    log = logs / f"{script}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(python), str(PEERS / script), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        wait_listening(port, process, log, 120)
        yield port, process.pid
    finally:
        terminate(process, 15)


@contextlib.contextmanager
def start(name: str, python: Path, logs: Path) -> Iterator[Server]:
    if name == "ours":
        env = {"REALTIME_CACHE": str(logs / "cache"), "HF_HUB_OFFLINE": "1"}
        with running_server("--model", "invert", env=env) as process:
            url = process.http_url

            async def ours(sdp: str) -> str:
                body = {"type": "offer", "sdp": sdp, "model": "invert"}
                answer = await asyncio.to_thread(post_json, f"{url}/v1/webrtc/offer", body)
                return str(answer["sdp"])

            yield Server(
                "ours (`invert`)",
                url,
                process.process.pid,
                inverted=True,
                offer=ours,
                note="256x256 out",
            )
    elif name == "aiortc":
        with peer_process(python, "aiortc_example_server.py", logs) as (port, pid):
            url = f"http://127.0.0.1:{port}"

            async def aiortc_example(sdp: str) -> str:
                body = {"type": "offer", "sdp": sdp}
                answer = await asyncio.to_thread(post_json, f"{url}/offer", body)
                return str(answer["sdp"])

            yield Server("aiortc-example passthrough", url, pid, False, aiortc_example)
    elif name == "fastrtc":
        with peer_process(python, "fastrtc_server.py", logs) as (port, pid):
            url = f"http://127.0.0.1:{port}"
            webrtc_id = uuid.uuid4().hex

            async def fastrtc(sdp: str) -> str:
                body = {"type": "offer", "sdp": sdp, "webrtc_id": webrtc_id}
                answer = await asyncio.to_thread(post_json, f"{url}/webrtc/offer", body)
                if "sdp" not in answer:
                    raise RuntimeError(f"fastrtc refused the offer: {answer}")
                return str(answer["sdp"])

            async def set_input() -> None:
                body = {"webrtc_id": webrtc_id}
                await asyncio.to_thread(post_json, f"{url}/input_hook", body)

            yield Server("fastrtc passthrough", url, pid, False, fastrtc, after_answer=set_input)
    else:
        raise ValueError(name)
