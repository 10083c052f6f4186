"""`run_bench`: connect the cameras, open the measuring window, report.

config = BenchConfig("http://127.0.0.1:8000", sessions=4, fps=30, duration_s=10)
report = (await run_bench(config)).report
print(markdown_table(report))
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from realtime.bench.camera import close_cameras, open_cameras
from realtime.bench.config import BenchConfig, check_config
from realtime.bench.records import SessionRecord
from realtime.bench.report import BenchReport, client_summary, machine_busy_seconds, summarize
from realtime.bench.scrape import scrape_async
from realtime.bench.stats import LatencySummary, latency_summary
from realtime.ice import is_loopback, restrict_host_candidates

PROGRESS_EVERY_S = 1.0


@dataclass(slots=True)
class BenchRun:
    """A finished run: the report and the raw records (for timelines)."""

    report: BenchReport
    records: list[SessionRecord]
    started_at: float
    ended_at: float


async def run_bench(config: BenchConfig, progress: IO[str] | None = None) -> BenchRun:
    """Connect `config.sessions` cameras, stream for `config.duration_s`, and report."""
    check_config(config)
    if config.transport == "webrtc" and is_loopback(urllib.parse.urlsplit(config.url).hostname):
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
