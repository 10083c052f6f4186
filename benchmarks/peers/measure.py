"""One run against one server: the camera's frames out, their indexes back, and the
run's row of the table."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from benchmarks.peers.barcode import BarcodeCamera, read_index
from benchmarks.peers.servers import Server, process_tree_cpu


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
            assert isinstance(frame, av.VideoFrame), f"a video track gave {type(frame).__name__}"
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
