"""Peers, same work, same run: ours against an aiortc-example passthrough and fastrtc, over WebRTC.

    .venv/bin/python benchmarks/peers.py [--duration 60] [--servers ours,aiortc,fastrtc]

One client, the same for every server: an aiortc peer connection (VP8) whose
camera films 512x512 at 30 fps and paints each frame's index into the image as
a barcode (two rows of 16 blocks of 32x32 px, black or white: the index's 16
bits and their complement, which checks the reading). The receiver reads the
index back from each frame it gets, so a frame's latency is exact: the time it
came back minus the time the camera handed it to the encoder. Each server runs
in its own process on a free loopback port, one after another:

- ours: `realtime serve --model invert --ice-address 127.0.0.1` (the client
  inverts the pixels back before reading); invert works at 256x256, so it
  resizes each frame and sends 256x256 back;
- aiortc-example: benchmarks/peers/aiortc_example_server.py, a passthrough
  written the way aiortc's examples/server/server.py is (a MediaStreamTrack
  returning `await self.track.recv()`, over a MediaRelay and aiortc's default,
  unbounded receive queue); it sends the decoded 512x512 frames back as they came;
- fastrtc: benchmarks/peers/fastrtc_server.py, `Stream(handler=lambda frame:
  frame, modality="video", mode="send-receive")` on FastAPI under uvicorn.

Their code is not in the project: the script makes a venv of its own (default
~/.cache/realtime-peers/venv, `--peer-venv`) and installs aiortc, aiohttp and
fastrtc into it from PyPI; if fastrtc does not install it is skipped, with a
note. Then it re-runs itself inside tests/loopback-only (a network namespace
holding only `lo`, where the machine allows one) for the measurement, and every
peer connection has no ICE servers and host candidates on 127.0.0.1 only.

Latency percentiles are over the frames sent after `--warmup` seconds (the
whole run after the warm-up), plus the median of the last 10 s, to show
drift. A frame whose index never came back within `--grace` seconds of the end
is lost. Server CPU is the utime+stime of the server process and its
descendants (from /proc) over the same window, per frame delivered in it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from support import free_port, running_server  # noqa: E402

from realtime.bench import terminate  # noqa: E402
from realtime.ice import restrict_host_candidates  # noqa: E402

PEERS = Path(__file__).resolve().parent / "peers"
DEFAULT_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "realtime-peers/venv"
)
REQUIRED = ["aiortc==1.16.0", "aiohttp==3.14.5"]  # aiortc as in the project's venv
OPTIONAL = ["fastrtc==0.0.34"]
SIZE = 512
BLOCK = 32
BITS = SIZE // BLOCK  # 16 bits: indexes up to 65535
TIME_BASE = Fraction(1, 90_000)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVERS = ("ours", "aiortc", "fastrtc")


# --- The peer venv -------------------------------------------------------------------------------


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


# --- The camera and the barcode ------------------------------------------------------------------


def texture() -> Callable[[int], np.ndarray]:
    """A moving picture under the barcode: every frame differs, as a camera's do."""
    y, x = np.mgrid[0:SIZE, 0 : 2 * SIZE].astype(np.float32)
    wide = np.stack(
        [
            128 + 100 * np.sin(x / 23) * np.cos(y / 31),
            128 + 100 * np.sin((x + y) / 41),
            128 + 100 * np.cos(x / 17 - y / 29),
        ],
        axis=-1,
    ).astype(np.uint8)

    def picture(index: int) -> np.ndarray:
        shift = (index * 3) % SIZE
        return np.ascontiguousarray(wide[:, shift : shift + SIZE])

    return picture


def paint_index(pixels: np.ndarray, index: int) -> None:
    """Row 0: the index's 16 bits, most significant first; row 1: their complement."""
    for bit in range(BITS):
        on = (index >> (BITS - 1 - bit)) & 1
        x = bit * BLOCK
        pixels[0:BLOCK, x : x + BLOCK] = 255 if on else 0
        pixels[BLOCK : 2 * BLOCK, x : x + BLOCK] = 0 if on else 255


def read_index(frame: av.VideoFrame, inverted: bool) -> int | None:
    """The index painted into `frame` (of any size), or None if the two rows disagree."""
    gray = frame.to_ndarray(format="gray")
    height, width = gray.shape
    block_w, block_h = width / BITS, height / BITS
    rows = []
    for row in range(2):
        center_y = (row + 0.5) * block_h
        y0, y1 = int(center_y - block_h / 4), int(center_y + block_h / 4) + 1
        bits = []
        for bit in range(BITS):
            center_x = (bit + 0.5) * block_w
            x0, x1 = int(center_x - block_w / 4), int(center_x + block_w / 4) + 1
            bright = gray[y0:y1, x0:x1].mean() > 127
            bits.append(int(bright != inverted))
        rows.append(bits)
    if any(a == b for a, b in zip(rows[0], rows[1], strict=True)):
        return None
    return int("".join(map(str, rows[0])), 2)


class BarcodeCamera(MediaStreamTrack):
    """Films `total` frames at `fps`, numbered 1..total in the barcode, then frames numbered 0.

    The fillers after the last frame push it through: aiortc's jitter buffer hands
    a frame on only when a packet of the next one arrives."""

    kind = "video"

    def __init__(self, fps: float, total: int, on_frame: Callable[[int], None]) -> None:
        super().__init__()
        self.fps = fps
        self.total = total
        self.sent_at: dict[int, float] = {}
        self._on_frame = on_frame
        self._picture = texture()
        self.frames = 0
        self._started_at: float | None = None

    async def recv(self) -> av.VideoFrame:
        self.frames += 1
        index = self.frames if self.frames <= self.total else 0
        now = time.perf_counter()
        if self._started_at is None:
            self._started_at = now
        due = self._started_at + (self.frames - 1) / self.fps
        if due > now:
            await asyncio.sleep(due - now)
        pixels = self._picture(index)
        paint_index(pixels, index)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        sent = time.perf_counter()
        frame.pts = round((sent - self._started_at) / TIME_BASE)
        frame.time_base = TIME_BASE
        if index:
            self.sent_at[index] = sent
            self._on_frame(index)
        return frame


# --- Servers -------------------------------------------------------------------------------------


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
        with running_server("--model", "invert", cache=logs / "cache") as process:
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


# --- One run -------------------------------------------------------------------------------------


@dataclass
class Run:
    server: Server
    fps: float
    duration: float
    warmup: float
    sent_at: dict[int, float] = field(default_factory=dict)
    received_at: dict[int, float] = field(default_factory=dict)
    frames_in: int = 0
    unreadable: int = 0
    width: int = 0
    codec: str = ""
    cpu_window: tuple[float, float] = (0.0, 0.0)
    window: tuple[float, float] = (0.0, 0.0)

    @property
    def first_measured(self) -> int:
        return int(self.warmup * self.fps) + 1

    def row(self) -> list[str]:
        total = len(self.sent_at)
        measured = list(range(self.first_measured, total + 1))
        got = [i for i in measured if i in self.received_at]
        latencies = sorted((self.received_at[i] - self.sent_at[i]) * 1000 for i in got)
        last = [i for i in got if self.sent_at[i] >= self.sent_at[total] - 10]
        last_ms = [(self.received_at[i] - self.sent_at[i]) * 1000 for i in last]

        def pct(p: float) -> str:
            return f"{latencies[min(len(latencies) - 1, int(len(latencies) * p))]:.0f}"

        seconds = self.window[1] - self.window[0]
        cpu = self.cpu_window[1] - self.cpu_window[0]
        lost = len(measured) - len(got)
        return [
            self.server.name,
            f"{self.width}x{self.width} {self.codec}",
            str(len(measured)),
            f"{len(got) / seconds:.1f}" if seconds else "-",
            f"{lost} ({100 * lost / max(1, len(measured)):.1f} %)",
            f"{pct(0.5)} / {pct(0.95)} / {pct(0.99)}" if latencies else "-",
            f"{statistics.median(last_ms):.0f}" if last_ms else "-",
            f"{latencies[-1]:.0f}" if latencies else "-",
            f"{1000 * cpu / len(got):.2f}" if got else "-",
            f"{100 * cpu / seconds:.0f}" if seconds else "-",
        ]


async def measure(server: Server, fps: float, duration: float, warmup: float, grace: float) -> Run:
    run = Run(server, fps, duration, warmup)
    total = round(fps * duration)

    def on_frame(index: int) -> None:
        if index == run.first_measured:
            run.cpu_window = (process_tree_cpu(server.pid), 0.0)
            run.window = (time.perf_counter(), 0.0)

    camera = BarcodeCamera(fps, total, on_frame)
    run.sent_at = camera.sent_at
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("control")  # ours sends `ready` on it; fastrtc's track waits for one
    transceiver = pc.addTransceiver(camera, direction="sendrecv")
    vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
    transceiver.setCodecPreferences(vp8)
    done = asyncio.Event()
    last_arrival = time.perf_counter()

    async def receive(track: MediaStreamTrack) -> None:
        nonlocal last_arrival
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            arrived = time.perf_counter()
            run.frames_in += 1
            run.width = frame.width
            index = read_index(frame, server.inverted)
            if index == 0:  # a filler
                continue
            if index is None or index not in camera.sent_at:
                run.unreadable += 1
                continue
            if index not in run.received_at:
                run.received_at[index] = arrived
                last_arrival = arrived
            if index == total and not done.is_set():  # frames come back in order: the end
                run.cpu_window = (run.cpu_window[0], process_tree_cpu(server.pid))
                done.set()

    tasks: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(receive(track))))
    try:
        await pc.setLocalDescription(await pc.createOffer())
        answer = await server.offer(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        if server.after_answer is not None:
            await server.after_answer()
        run.codec = "VP8"
        # Run until the last frame is sent, then wait for stragglers while frames still arrive.
        while len(camera.sent_at) < total:
            await asyncio.sleep(0.1)
        end = time.perf_counter()
        while not done.is_set() and time.perf_counter() - max(end, last_arrival) < grace:
            await asyncio.sleep(0.05)
        run.window = (run.window[0], last_arrival)
        if not done.is_set():
            run.cpu_window = (run.cpu_window[0], process_tree_cpu(server.pid))
    finally:
        await pc.close()
        for task in tasks:
            task.cancel()
    return run


# --- Main ----------------------------------------------------------------------------------------


HEADER = (
    "| server | video back | frames measured | delivered fps | lost | latency p50 / p95 / p99 ms "
    "| p50 last 10 s ms | max ms | server CPU ms/frame | server CPU % of a core |"
)


def measure_all(args: argparse.Namespace, python: Path, skipped: list[str]) -> None:
    restrict_host_candidates(["127.0.0.1"])
    rows, notes = [], list(skipped)
    with tempfile.TemporaryDirectory() as folder:
        logs = Path(folder)
        for name in args.servers:
            if name == "fastrtc" and any(note.startswith("fastrtc") for note in skipped):
                continue
            print(f"{name}: {args.duration:g} s at {args.fps:g} fps ...", file=sys.stderr)
            try:
                with start(name, python, logs) as server:
                    run = asyncio.run(
                        measure(server, args.fps, args.duration, args.warmup, args.grace)
                    )
            except Exception as error:  # one server failing does not lose the others
                notes.append(f"{name} failed: {error!r}"[:2000])
                continue
            rows.append(run.row())
            print("| " + " | ".join(rows[-1]) + " |", file=sys.stderr)
            if run.unreadable:
                notes.append(f"{name}: {run.unreadable} frames back had no readable index")
            notes.append(
                f"{name}: {run.frames_in} frames back in all, {len(run.received_at)} distinct"
            )
    print(
        f"\n512x512 camera at {args.fps:g} fps for {args.duration:g} s over WebRTC (VP8), "
        f"one session; latency over the frames sent after {args.warmup:g} s; "
        f"lost = not back {args.grace:g} s after the end\n"
    )
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    for note in notes:
        print(f"- {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of camera")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds left out of latency")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--grace", type=float, default=5.0, help="seconds to wait for stragglers")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--peer-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument(
        "--no-namespace", action="store_true", help="measure on the normal network namespace"
    )
    parser.add_argument("--measuring", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.servers = [name for name in args.servers.split(",") if name]
    for name in args.servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}: choose from {', '.join(SERVERS)}")
    if args.duration <= args.warmup:
        parser.error("--duration must be longer than --warmup")
    python, note = peer_venv(args.peer_venv)
    if args.measuring or args.no_namespace:
        measure_all(args, python, [note] if note else [])
        return
    # Set-up done on the normal network (PyPI); measure where only loopback exists.
    command = ["sh", str(ROOT / "tests/loopback-only"), sys.executable, *sys.argv, "--measuring"]
    sys.exit(subprocess.run(command).returncode)


if __name__ == "__main__":
    main()
