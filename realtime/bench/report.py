"""BenchReport: a run summarized, for people (a Markdown table) or tools (JSON)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from realtime.bench.config import BenchConfig
from realtime.bench.records import SessionRecord
from realtime.bench.scrape import ServerSample
from realtime.bench.stats import LatencySummary, jain_index, latency_summary
from realtime.bench.table import markdown_table as table

LATENCY_MEASURED = {
    "websocket": "client send of the source frame to receipt of the output naming it "
    "(source_frame)",
    "webrtc": "camera track handing frame N to its encoder to receipt of the `frame` "
    "metadata for source_frame N on `control` (the output video's encoding and trip "
    "back are not included)",
}


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
    loop_lag_mean_s: float | None
    """The event loop's mean lag over the window (/metrics), None when not exported."""
    loop_lag_p99_s: float | None
    """The bound of the lag histogram's bucket holding its 99th percentile in the window."""


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
        **_loop_lag(before, after),
    )


def _loop_lag(before: ServerSample, after: ServerSample) -> dict[str, float | None]:
    """The lag's mean and 99th percentile bucket over the window."""
    counts = {bound: after.loop_lag[bound] - before.loop_lag.get(bound, 0.0)
              for bound in sorted(after.loop_lag)}  # fmt: skip
    samples = counts.get(float("inf"), 0.0)
    if not samples:
        return {"loop_lag_mean_s": None, "loop_lag_p99_s": None}
    p99 = next(bound for bound, count in counts.items() if count >= 0.99 * samples)
    mean = (after.loop_lag_seconds - before.loop_lag_seconds) / samples
    return {"loop_lag_mean_s": mean, "loop_lag_p99_s": p99}


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
        if server.loop_lag_mean_s is not None and server.loop_lag_p99_s is not None:
            rows.append(
                (
                    "server event loop lag mean / p99 ms",
                    f"{server.loop_lag_mean_s * 1000:.2f} / <= {server.loop_lag_p99_s * 1000:g}",
                )
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
    return f"{table(('metric', 'value'), rows)}\n\nLatency: {report.latency_measured}."


def _latency_cell(latency: LatencySummary | None) -> str:
    if latency is None:
        return "n/a (no outputs)"
    return f"{latency.p50_ms:.1f} / {latency.p95_ms:.1f} / {latency.p99_ms:.1f}"


def report_json(report: BenchReport) -> bytes:
    return orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2)
