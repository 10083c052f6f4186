"""Backpressure: a model slower than the camera, fed at 30 and 60 fps for a minute.

    .venv/bin/python -m benchmarks.backpressure [--duration 60] [--delay-ms 100]
    .venv/bin/python -m benchmarks.backpressure --model tiny

One `realtime serve` process on loopback and one WebSocket camera
(`realtime.bench`, 512x512 JPEG q80) at each rate in turn. The slow model is
`invert` with its documented `delay_ms` param (each model call sleeps that
long: a model of known, fixed speed), or `--model tiny` (the real diffusers
path, about 50 ms a frame on a CPU). If the newest frame really wins, the
client's latency stays flat for the whole run (about one to two model steps),
the server drops what it cannot run, and its memory does not grow. Latency is
shown in 10 s buckets; RSS is the server's process_resident_memory_bytes from
/metrics at the start and the end of each run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from benchmarks import load
from realtime.bench.config import BenchConfig
from realtime.bench.harness import running_server
from realtime.bench.report import BenchReport
from realtime.bench.run import BenchRun, latency_timeline, run_bench
from realtime.bench.table import markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.backpressure", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per rate")
    parser.add_argument("--bucket", type=float, default=10.0, help="seconds per latency bucket")
    parser.add_argument("--model", default="invert", choices=["invert", "tiny"])
    parser.add_argument("--delay-ms", type=int, default=100, help="invert's delay_ms")
    parser.add_argument("--fps", type=float, action="append", help="default: 30 and 60")
    args = parser.parse_args()
    params: dict[str, Any] = {"delay_ms": args.delay_ms} if args.model == "invert" else {}
    slow = f"invert, delay_ms {args.delay_ms}" if args.model == "invert" else "tiny"
    runs: dict[float, BenchRun] = {}
    with running_server("--model", args.model) as server:
        for fps in args.fps or [30.0, 60.0]:
            server.wait_until_idle()
            config = BenchConfig(
                server.http_url,
                fps=fps,
                duration_s=args.duration,
                model=args.model,
                params=params,
                warmup_s=1.0,
            )
            runs[fps] = asyncio.run(run_bench(config, progress=sys.stderr))

    print(f"{slow}; one WebSocket session, 512x512 JPEG q80; {args.duration:g} s per rate\n")
    print("Latency over time (client-side, send of the source frame to receipt of its output):\n")
    header = ["camera fps", "from s", "outputs/s", "p50 ms", "p99 ms", "max ms"]
    buckets = [row for fps, run in runs.items() for row in timeline(fps, run, args.bucket)]
    print(markdown_table(header, buckets))
    print()
    header = ["camera fps", "frames sent", "outputs/s", "dropped", "dropped %"]
    header += ["latency p50 / p99 ms", "server RSS start / end MiB", "rest of machine, cores"]
    print(markdown_table(header, [summary(fps, run.report) for fps, run in runs.items()]))


def timeline(fps: float, run: BenchRun, bucket_s: float) -> list[list[str]]:
    """One row per latency bucket of the run."""
    window = run.ended_at - run.started_at
    buckets = latency_timeline(run, bucket_s)
    rows = []
    for index, (start, latency, count) in enumerate(buckets):
        end = window if index == len(buckets) - 1 else start + bucket_s
        if latency is None:
            rows.append([f"{fps:g}", f"{start:g}", "0", "", "", ""])
            continue
        rows.append(
            [
                f"{fps:g}",
                f"{start:g}",
                f"{count / (end - start):.1f}",
                f"{latency.p50_ms:.0f}",
                f"{latency.p99_ms:.0f}",
                f"{latency.max_ms:.0f}",
            ]
        )
    return rows


def summary(fps: float, report: BenchReport) -> list[str]:
    server = report.server
    rss = (
        f"{server.rss_start_bytes / 2**20:.1f} / {server.rss_end_bytes / 2**20:.1f}"
        if server and server.rss_start_bytes and server.rss_end_bytes
        else "n/a"
    )
    latency = f"{report.latency.p50_ms:.0f} / {report.latency.p99_ms:.0f}" if report.latency else ""
    return [
        f"{fps:g}",
        str(report.frames_sent),
        f"{report.aggregate_fps:.1f}",
        str(report.dropped_frames),
        f"{report.dropped_percent:.1f}",
        latency,
        rss,
        load.rest_of_machine(report),
    ]


if __name__ == "__main__":
    main()
