"""`realtime bench`: simulated cameras against a server, measured at the client.

    config = BenchConfig("http://127.0.0.1:8000", sessions=4, fps=30, duration_s=10)
    report = await run_bench(config)
    print(markdown_table(report))

Each session is a camera that paces itself at `fps` and never waits for an
output before sending the next frame (the server keeps the newest and drops
the rest), while a reader takes every output as it comes. Over the WebSocket
the camera sends JPEGs (`realtime.clients.websocket.StreamClient`); over WebRTC it is a
video track (`realtime.clients.webrtc`). The measuring window opens once every
session is `ready` (and `warmup_s` later); outputs received in it give the fps, the latencies and,
with the server's `process_cpu_seconds_total` from /metrics at both ends of
the window, the server's CPU seconds per output frame.

Latency is from sending a source frame to receiving its output. Over the
WebSocket every output names its `source_frame`. WebRTC video carries no frame
number, so the camera track notes when it hands frame N to its encoder, and
the latency ends when the `frame` metadata for `source_frame` N arrives on
`control`: the server numbers video frames in the order it decodes them, so a
frame lost in transit would shift the count (rare on a LAN; the report's
`server.frames_received` against `frames_sent` shows it), and the server sends
that metadata as it hands the output to its video encoder, so the output's
own encoding and trip back are not in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from frames.codecs import encode_image
from frames.frame import Pixels
from realtime.clients.webrtc import CameraTrack, RtcClient
from realtime.clients.websocket import Closing, ErrorMessage, FrameOutput, StreamClient
from realtime.ice import restrict_host_candidates

TRANSPORTS = ("websocket", "webrtc")
CAMERA_FRAMES = 30
"""Distinct synthetic frames each camera cycles through (a drifting pattern)."""
PROGRESS_EVERY_S = 1.0
STARTUP_TIMEOUT_S = 300.0

LATENCY_MEASURED = {
    "websocket": "client send of the source frame to receipt of the output naming it "
    "(source_frame)",
    "webrtc": "camera track handing frame N to its encoder to receipt of the `frame` "
    "metadata for source_frame N on `control` (the output video's encoding and trip "
    "back are not included)",
}


@dataclass(frozen=True, slots=True)
class BenchConfig:
    url: str
    """The server's http(s) URL."""
    sessions: int = 1
    fps: float = 30.0
    """Each camera's frame rate; 0: send back to back, as fast as the socket takes
    them (WebSocket only)."""
    width: int = 512
    height: int = 512
    quality: int = 80
    """JPEG quality of the WebSocket camera's frames (WebRTC's video encoder sets its own)."""
    duration_s: float = 10.0
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    transport: str = "websocket"
    api_key: str | None = None
    warmup_s: float = 0.0
    """Seconds the cameras stream before the measuring window opens."""


@dataclass(slots=True)
class SessionRecord:
    """What one simulated camera sent and received; times are perf_counter seconds."""

    sent_at: dict[int, float] = field(default_factory=dict)
    frames_sent: int = 0
    late_frames: int = 0
    """Frame slots the camera missed because sending had not returned in time."""
    received: list[tuple[float, float]] = field(default_factory=list)
    """(received at, latency in seconds) of each output."""
    video_frames: list[float] = field(default_factory=list)
    """WebRTC: when each frame of the output video arrived."""
    dropped_frames: int = 0
    errors: int = 0
    model: str | None = None

    def output(self, source_frame: int, dropped_frames: int) -> None:
        now = time.perf_counter()
        sent = self.sent_at.get(source_frame)
        if sent is not None:
            self.received.append((now, now - sent))
            for number in [n for n in self.sent_at if n <= source_frame]:
                del self.sent_at[number]  # outputs come in increasing source_frame order
        self.dropped_frames = max(self.dropped_frames, dropped_frames)


@dataclass(frozen=True, slots=True)
class ServerSample:
    """The server's /metrics at one moment."""

    cpu_seconds: float
    rss_bytes: float | None
    frames: dict[str, float]
    """realtime_frames_total by outcome, for the bench's model and transport."""
    model_calls: float
    """realtime_worker_batches_total over the model's workers."""


@dataclass(frozen=True, slots=True)
class LatencySummary:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    samples: int


@dataclass(frozen=True, slots=True)
class SessionSummary:
    fps: float
    outputs: int
    frames_sent: int
    late_frames: int
    dropped_frames: int
    errors: int
    video_fps: float | None


@dataclass(frozen=True, slots=True)
class ServerSummary:
    cpu_seconds: float
    cpu_per_frame: float | None
    """Server CPU seconds per output frame the bench received in the window."""
    rss_start_bytes: float | None
    rss_end_bytes: float | None
    frames_received: int
    frames_sent: int
    frames_dropped: int
    model_calls: int
    """Model calls (batches) in the window; frames_sent / model_calls is the mean batch."""


@dataclass(frozen=True, slots=True)
class ClientSummary:
    """The machine the bench ran on, over the window: with the server on the same
    machine, `machine_busy_seconds` - `cpu_seconds` - the server's is everyone else."""

    cpu_seconds: float
    """CPU the bench process itself used."""
    machine_busy_seconds: float | None
    """Busy CPU seconds of the whole machine, all cores (/proc/stat; None elsewhere)."""
    cpus: int


@dataclass(frozen=True, slots=True)
class BenchReport:
    url: str
    transport: str
    model: str | None
    params: dict[str, Any]
    width: int
    height: int
    quality: int | None
    fps: float
    duration_s: float
    """The measuring window, as it ran."""
    sessions: int
    outputs: int
    frames_sent: int
    late_frames: int
    dropped_frames: int
    dropped_percent: float
    errors: int
    fps_min: float
    fps_mean: float
    fps_max: float
    aggregate_fps: float
    fairness: float | None
    """Jain's index over per-session delivered fps: 1 when all are equal, 1/n at worst."""
    latency: LatencySummary | None
    latency_measured: str
    server: ServerSummary | None
    client: ClientSummary
    per_session: list[SessionSummary]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class BenchRun:
    """A finished run: the report and the raw records (for timelines)."""

    report: BenchReport
    records: list[SessionRecord]
    started_at: float
    ended_at: float


# Numbers


def jain_index(values: Sequence[float]) -> float | None:
    """(sum x)^2 / (n sum x^2): 1 when every value is equal; None when all are 0."""
    squares = sum(value * value for value in values)
    if not values or squares == 0:
        return None
    return sum(values) ** 2 / (len(values) * squares)


def latency_summary(latencies_s: Sequence[float]) -> LatencySummary | None:
    if not latencies_s:
        return None
    ms = np.asarray(latencies_s) * 1000
    p50, p95, p99 = (float(value) for value in np.percentile(ms, [50, 95, 99]))
    return LatencySummary(p50, p95, p99, float(ms.max()), len(ms))


def latency_timeline(
    run: BenchRun, bucket_s: float
) -> list[tuple[float, LatencySummary | None, int]]:
    """Latency in consecutive `bucket_s` buckets of the window (the last one takes
    the window's few extra milliseconds): (bucket start in s, summary, outputs in it)."""
    window = run.ended_at - run.started_at
    count = max(1, round(window / bucket_s))
    buckets: list[tuple[float, LatencySummary | None, int]] = []
    for index in range(count):
        start = run.started_at + index * bucket_s
        end = run.ended_at if index == count - 1 else start + bucket_s
        latencies = [
            latency
            for record in run.records
            for received_at, latency in record.received
            if start <= received_at < end or received_at == end == run.ended_at
        ]
        buckets.append((index * bucket_s, latency_summary(latencies), len(latencies)))
    return buckets


# The synthetic camera


def camera_pixels(width: int, height: int, count: int = CAMERA_FRAMES) -> list[Pixels]:
    """`count` frames of a drifting colour pattern with a fixed texture: every frame
    differs, and JPEG and VP8 have edges to encode, as with a real camera."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = np.random.default_rng(0).normal(0, 12, (height, width, 1)).astype(np.float32)
    frames = []
    for index in range(count):
        phase = 2 * np.pi * index / count
        channels = [
            127.5
            + 100
            * np.sin(x / max(width, 1) * 4 * np.pi + phase + c)
            * np.cos(y / max(height, 1) * 3 * np.pi - phase + c)
            for c in range(3)
        ]
        image = np.stack(channels, axis=-1) + np.roll(texture, index * 4, axis=1)
        frames.append(image.clip(0, 255).astype(np.uint8))
    return frames


def camera_jpegs(config: BenchConfig) -> list[bytes]:
    """What each WebSocket camera sends, in a loop."""
    return [
        encode_image(pixels, "jpeg", config.quality)
        for pixels in camera_pixels(config.width, config.height)
    ]


class TimedCamera(CameraTrack):
    """A CameraTrack that cycles through `frames` and notes when it hands each on."""

    def __init__(self, frames: Sequence[Pixels], fps: float, record: SessionRecord) -> None:
        super().__init__(frames[0], fps)
        self.frames = frames
        self.record = record

    async def recv(self) -> Any:
        self.image = self.frames[self.frames_sent % len(self.frames)]
        frame = await super().recv()
        self.record.frames_sent = self.frames_sent
        self.record.sent_at[self.frames_sent] = time.perf_counter()
        return frame


async def paced_sends(
    record: SessionRecord, frames: Sequence[bytes], client: StreamClient, fps: float
) -> None:
    """A WebSocket camera: frame k is due at start + k / fps, whatever came back.
    A send that returns after the next slot skips the missed slots (`late_frames`)."""
    started = time.perf_counter()
    slot = 0
    while True:
        if fps > 0:
            due = started + slot / fps
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        number = record.frames_sent + 1
        record.sent_at[number] = time.perf_counter()
        await client.send_frame(frames[number % len(frames)])
        record.frames_sent = number
        slot += 1
        if fps > 0:
            behind = int((time.perf_counter() - started) * fps) - slot
            if behind > 0:
                record.late_frames += behind
                slot += behind
        else:
            await asyncio.sleep(0)  # let the reader run


async def read_websocket(client: StreamClient, record: SessionRecord) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            message = await client.receive()
            if isinstance(message, FrameOutput):
                record.output(message.source_frame, message.dropped_frames)
            elif isinstance(message, ErrorMessage):
                record.errors += 1
            elif isinstance(message, Closing):
                return


async def read_control(client: RtcClient, record: SessionRecord) -> None:
    while True:
        message = await client.receive_message()
        if message["type"] == "frame":
            record.output(int(message["source_frame"]), int(message["dropped_frames"]))
        elif message["type"] == "error":
            record.errors += 1
        elif message["type"] == "closing":
            return


async def read_video(client: RtcClient, record: SessionRecord) -> None:
    """Takes every frame of the output video, as a player would."""
    with contextlib.suppress(Exception):  # MediaStreamError once the connection closes
        while True:
            await client.next_frame()
            record.video_frames.append(time.perf_counter())


# Sessions


@dataclass(slots=True)
class Camera:
    """One connected session: its record, its running tasks and how to close it."""

    record: SessionRecord
    tasks: list[asyncio.Task[None]]
    close: Callable[[], Awaitable[None]]
    start: Callable[[], None] | None = None
    """WebSocket: starts the paced sends (the WebRTC camera runs from connection)."""


async def open_websocket_camera(config: BenchConfig, frames: Sequence[bytes]) -> Camera:
    client = await StreamClient.connect(
        _ws_url(config.url), model=config.model, api_key=config.api_key
    )
    record = SessionRecord(model=client.ready.model)
    if config.params:
        await client.update_params(**config.params)
    tasks = [asyncio.create_task(read_websocket(client, record))]

    def start() -> None:
        tasks.append(asyncio.create_task(paced_sends(record, frames, client, config.fps)))

    return Camera(record, tasks, client.close, start)


async def open_webrtc_camera(config: BenchConfig, frames: Sequence[Pixels]) -> Camera:
    record = SessionRecord()
    camera = TimedCamera(frames, config.fps, record)
    client = await RtcClient.offer(
        config.url,
        camera=camera,
        model=config.model,
        params=dict(config.params) or None,
        api_key=config.api_key,
    )
    record.model = str((client.ready or {}).get("model", config.model))
    tasks = [
        asyncio.create_task(read_control(client, record)),
        asyncio.create_task(read_video(client, record)),
    ]
    return Camera(record, tasks, client.close)


async def open_cameras(config: BenchConfig) -> list[Camera]:
    """Connect every session at once; if one fails, close the others and raise."""
    if config.transport == "webrtc":
        pixels = camera_pixels(config.width, config.height)
        openings = [open_webrtc_camera(config, pixels) for _ in range(config.sessions)]
    else:
        jpegs = camera_jpegs(config)
        openings = [open_websocket_camera(config, jpegs) for _ in range(config.sessions)]
    results = await asyncio.gather(*openings, return_exceptions=True)
    cameras = [result for result in results if isinstance(result, Camera)]
    failure = next((result for result in results if isinstance(result, BaseException)), None)
    if failure is not None:
        await close_cameras(cameras)
        raise failure
    return cameras


async def close_cameras(cameras: Sequence[Camera]) -> None:
    for camera in cameras:
        for task in camera.tasks:
            task.cancel()
    for camera in cameras:
        with contextlib.suppress(Exception):
            await camera.close()
    await asyncio.gather(
        *(task for camera in cameras for task in camera.tasks), return_exceptions=True
    )


# The server's /metrics


def scrape(config: BenchConfig, model: str | None) -> ServerSample | None:
    """GET /metrics; None when the server does not export process_cpu_seconds_total."""
    request = urllib.request.Request(f"{config.url.rstrip('/')}/metrics")
    if config.api_key:
        request.add_header("Authorization", f"Bearer {config.api_key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    cpu: float | None = None
    rss: float | None = None
    frames: dict[str, float] = {}
    calls = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "process_cpu_seconds_total":
                cpu = sample.value
            elif sample.name == "process_resident_memory_bytes":
                rss = sample.value
            elif (
                sample.name == "realtime_frames_total"
                and sample.labels.get("transport") == config.transport
                and (model is None or sample.labels.get("model") == model)
            ):
                outcome = sample.labels.get("outcome", "")
                frames[outcome] = frames.get(outcome, 0.0) + sample.value
            elif sample.name == "realtime_worker_batches_total" and (
                model is None or sample.labels.get("model") == model
            ):
                calls += sample.value
    return None if cpu is None else ServerSample(cpu, rss, frames, calls)


async def scrape_async(config: BenchConfig, model: str | None) -> ServerSample | None:
    return await asyncio.to_thread(scrape, config, model)


# The run


async def run_bench(config: BenchConfig, progress: IO[str] | None = None) -> BenchRun:
    """Connect `config.sessions` cameras, stream for `config.duration_s`, and report."""
    check_config(config)
    if config.transport == "webrtc" and is_loopback(config.url):
        # aioice never offers loopback candidates; a loopback server needs them (process-wide).
        restrict_host_candidates(["127.0.0.1"])
    cameras = await open_cameras(config)
    records = [camera.record for camera in cameras]
    model = records[0].model if records else config.model
    try:
        for camera in cameras:
            if camera.start is not None:
                camera.start()
        if config.warmup_s > 0:
            if progress is not None:
                progress.write(f"bench warming up for {config.warmup_s:g} s")
                progress.flush()
            await asyncio.sleep(config.warmup_s)
        before = await scrape_async(config, model)
        client_before = time.process_time(), machine_busy_seconds()
        started_at = time.perf_counter()
        await _wait_reporting(config, records, started_at, progress)
        ended_at = time.perf_counter()
        client_after = time.process_time(), machine_busy_seconds()
        after = await scrape_async(config, model)
    finally:
        await close_cameras(cameras)
    client = client_summary(client_before, client_after)
    report = summarize(config, model, records, (started_at, ended_at), (before, after), client)
    return BenchRun(report, records, started_at, ended_at)


def check_config(config: BenchConfig) -> None:
    if config.transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
    if config.sessions < 1:
        raise ValueError("sessions must be at least 1")
    if config.fps < 0 or (config.fps == 0 and config.transport == "webrtc"):
        raise ValueError("fps must be more than 0 (0, back to back, is WebSocket only)")
    if config.duration_s <= 0:
        raise ValueError("duration must be more than 0")
    if config.warmup_s < 0:
        raise ValueError("warm-up must be 0 or more")


async def _wait_reporting(
    config: BenchConfig, records: Sequence[SessionRecord], started_at: float, out: IO[str] | None
) -> None:
    ends_at = started_at + config.duration_s
    while (now := time.perf_counter()) < ends_at:
        await asyncio.sleep(min(PROGRESS_EVERY_S, ends_at - now))
        if out is not None:
            out.write("\r" + progress_line(records, started_at, config.duration_s))
            out.flush()
    if out is not None:
        out.write("\n")
        out.flush()


def progress_line(records: Sequence[SessionRecord], started_at: float, duration_s: float) -> str:
    now = time.perf_counter()
    elapsed = now - started_at
    outputs = sum(1 for record in records for at, _ in record.received if at >= started_at)
    last_second = [
        latency
        for record in records
        for at, latency in record.received
        if at >= max(started_at, now - 1)
    ]
    summary = latency_summary(last_second)
    latency = f"p50 {summary.p50_ms:.0f} ms" if summary else "no output in 1 s"
    return (
        f"bench {min(elapsed, duration_s):5.1f}/{duration_s:g} s  {len(records)} sessions  "
        f"{outputs / max(elapsed, 1e-9):7.1f} outputs/s  {latency}  "
        f"dropped {sum(record.dropped_frames for record in records)}  "
    )


def summarize(
    config: BenchConfig,
    model: str | None,
    records: Sequence[SessionRecord],
    window_at: tuple[float, float],
    server_samples: tuple[ServerSample | None, ServerSample | None],
    client: ClientSummary,
) -> BenchReport:
    started_at, ended_at = window_at
    before, after = server_samples
    window = ended_at - started_at
    in_window = [
        [latency for at, latency in record.received if started_at <= at <= ended_at]
        for record in records
    ]
    per_session = [
        SessionSummary(
            fps=len(latencies) / window,
            outputs=len(latencies),
            frames_sent=record.frames_sent,
            late_frames=record.late_frames,
            dropped_frames=record.dropped_frames,
            errors=record.errors,
            video_fps=(
                sum(1 for at in record.video_frames if started_at <= at <= ended_at) / window
                if config.transport == "webrtc"
                else None
            ),
        )
        for record, latencies in zip(records, in_window, strict=True)
    ]
    rates = [session.fps for session in per_session]
    outputs = sum(session.outputs for session in per_session)
    sent = sum(session.frames_sent for session in per_session)
    dropped = sum(session.dropped_frames for session in per_session)
    return BenchReport(
        url=config.url,
        transport=config.transport,
        model=model,
        params=dict(config.params),
        width=config.width,
        height=config.height,
        quality=config.quality if config.transport == "websocket" else None,
        fps=config.fps,
        duration_s=window,
        sessions=len(records),
        outputs=outputs,
        frames_sent=sent,
        late_frames=sum(session.late_frames for session in per_session),
        dropped_frames=dropped,
        dropped_percent=100 * dropped / sent if sent else 0.0,
        errors=sum(session.errors for session in per_session),
        fps_min=min(rates, default=0.0),
        fps_mean=sum(rates) / len(rates) if rates else 0.0,
        fps_max=max(rates, default=0.0),
        aggregate_fps=outputs / window,
        fairness=jain_index(rates),
        latency=latency_summary([latency for latencies in in_window for latency in latencies]),
        latency_measured=LATENCY_MEASURED[config.transport],
        server=server_summary(before, after, outputs),
        client=client,
        per_session=per_session,
    )


def machine_busy_seconds() -> float | None:
    """Busy CPU seconds of this machine since boot, all cores (Linux /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def rest_of_machine_cores(report: BenchReport) -> float | None:
    """With the server on this machine: the cores that neither the server nor the bench
    used but something else did (other processes, the kernel's loopback networking)."""
    busy = report.client.machine_busy_seconds
    if busy is None or report.server is None:
        return None
    return (busy - report.client.cpu_seconds - report.server.cpu_seconds) / report.duration_s


def client_summary(
    before: tuple[float, float | None], after: tuple[float, float | None]
) -> ClientSummary:
    busy = None if before[1] is None or after[1] is None else after[1] - before[1]
    return ClientSummary(after[0] - before[0], busy, os.cpu_count() or 1)


def server_summary(
    before: ServerSample | None, after: ServerSample | None, outputs: int
) -> ServerSummary | None:
    if before is None or after is None:
        return None
    cpu = after.cpu_seconds - before.cpu_seconds

    def frames(outcome: str) -> int:
        return round(after.frames.get(outcome, 0.0) - before.frames.get(outcome, 0.0))

    return ServerSummary(
        cpu_seconds=cpu,
        cpu_per_frame=cpu / outputs if outputs else None,
        rss_start_bytes=before.rss_bytes,
        rss_end_bytes=after.rss_bytes,
        frames_received=frames("received"),
        frames_sent=frames("sent"),
        frames_dropped=frames("dropped"),
        model_calls=round(after.model_calls - before.model_calls),
    )


# Output


def markdown_table(report: BenchReport) -> str:
    """The report for people: one Markdown table and what the latency measures."""
    source = (
        f"{report.width}x{report.height} JPEG q{report.quality}"
        if report.quality is not None
        else f"{report.width}x{report.height} video"
    )
    rate = f"{report.fps:g} fps" if report.fps > 0 else "back to back"
    rows = [
        ("run", f"{report.sessions} x {report.transport}, {report.model}, {source} at {rate}"),
        ("window", f"{report.duration_s:.1f} s"),
        (
            "delivered fps per session (min / mean / max)",
            f"{report.fps_min:.1f} / {report.fps_mean:.1f} / {report.fps_max:.1f}",
        ),
        ("aggregate fps", f"{report.aggregate_fps:.1f}"),
        ("latency p50 / p95 / p99 ms", _latency_cell(report.latency)),
        (
            "dropped by the server",
            f"{report.dropped_frames} of {report.frames_sent} sent "
            f"({report.dropped_percent:.1f} %)",
        ),
        ("fairness (Jain's index)", "n/a" if report.fairness is None else f"{report.fairness:.3f}"),
    ]
    if report.late_frames:
        rows.append(("camera frames not sent in time", str(report.late_frames)))
    if report.errors:
        rows.append(("error messages", str(report.errors)))
    if report.transport == "webrtc":
        video = [session.video_fps or 0.0 for session in report.per_session]
        rows.append(("output video fps per session (mean)", f"{sum(video) / len(video):.1f}"))
    server = report.server
    if server is None:
        rows.append(("server CPU per output frame", "n/a (no process metrics at /metrics)"))
    else:
        per_frame = "n/a" if server.cpu_per_frame is None else f"{server.cpu_per_frame * 1000:.2f}"
        rows.append(("server CPU ms per output frame", per_frame))
        rows.append(("server CPU s in the window", f"{server.cpu_seconds:.2f}"))
        if server.model_calls:
            batch = server.frames_sent / server.model_calls
            rows.append(
                ("model calls (mean frames per call)", f"{server.model_calls} ({batch:.2f})")
            )
        if server.rss_start_bytes is not None and server.rss_end_bytes is not None:
            rows.append(
                (
                    "server RSS start / end MiB",
                    f"{server.rss_start_bytes / 2**20:.1f} / {server.rss_end_bytes / 2**20:.1f}",
                )
            )
    client = report.client
    if client.machine_busy_seconds is not None:
        rows.append(
            (
                f"bench CPU s / this machine's busy CPU s ({client.cpus} cores)",
                f"{client.cpu_seconds:.2f} / {client.machine_busy_seconds:.2f}",
            )
        )
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines.append("")
    lines.append(f"Latency: {report.latency_measured}.")
    return "\n".join(lines)


def _latency_cell(latency: LatencySummary | None) -> str:
    if latency is None:
        return "n/a (no outputs)"
    return f"{latency.p50_ms:.1f} / {latency.p95_ms:.1f} / {latency.p99_ms:.1f}"


# A server of its own


@contextlib.contextmanager
def serving(serve_args: Sequence[str], log: Path | None = None) -> Iterator[Server]:
    """`realtime serve SERVE_ARGS` on a free loopback port, WebRTC candidates on
    loopback only; entered once /healthz says its models are warm."""
    port = free_port()
    command = [sys.executable, "-m", "realtime", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--ice-address", "127.0.0.1", *serve_args]
    with contextlib.ExitStack() as stack:
        if log is None:
            log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "serve.log"
        output = stack.enter_context(log.open("w"))
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        server = Server(f"http://127.0.0.1:{port}", process, log)
        try:
            server.wait_until_ready()
            yield server
        finally:
            server.stop()


@dataclass(slots=True)
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def wait_until_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"realtime serve did not start:\n{tail}")
            time.sleep(0.1)

    def wait_until_idle(self, timeout: float = 120.0) -> None:
        """Until no session holds a slot: the last run's sessions end once their frame
        in the model is done, so a slow model keeps them a while after they closed."""
        deadline = time.monotonic() + timeout
        while self._health().get("sessions", 0) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _healthy(self) -> bool:
        return self._health().get("status") == "ok"

    def _health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
                health: dict[str, Any] = orjson.loads(response.read())
                return health
        except urllib.error.HTTPError as error:  # 503 while loading: the body says why
            with contextlib.suppress(orjson.JSONDecodeError):
                body: dict[str, Any] = orjson.loads(error.read())
                return body
            return {}
        except (urllib.error.URLError, OSError):
            return {}

    def rss_bytes(self) -> int:
        return rss_bytes(self.process.pid)

    def stop(self) -> None:
        terminate(self.process, 30)


def rss_bytes(pid: int) -> int:
    """The resident memory of process `pid` (Linux: /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


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


def is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ws_url(url: str) -> str:
    scheme, rest = url.split("://", 1) if "://" in url else ("http", url)
    return f"{'wss' if scheme in ('https', 'wss') else 'ws'}://{rest}"


def report_json(report: BenchReport) -> bytes:
    return orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2)
