"""Batching: aggregate fps with cross-session batching on (--max-batch 8) and off (1).

    .venv/bin/python -m benchmarks.batching [--sessions 8] [--duration 10] [--model tiny]

For each model and each `--max-batch`, a fresh `realtime serve --model M
--max-batch N` process on loopback and `--sessions` WebSocket cameras
(`realtime.bench`, 30 fps each, 256x256 JPEG q80: the models' own size) after
a warm-up. "frames/model call" is the server's frames sent over its worker's
model calls (realtime_worker_batches_total), so it shows how full the batches
really were.
"""

from __future__ import annotations

import asyncio
import sys

from benchmarks import load
from realtime.bench.harness import running_server
from realtime.bench.report import BenchReport
from realtime.bench.run import run_bench
from realtime.bench.table import markdown_table


def row(model: str, max_batch: int, report: BenchReport) -> list[str]:
    latency = report.latency
    return [
        model,
        str(max_batch),
        str(report.sessions),
        f"{report.aggregate_fps:.1f}",
        f"{latency.p50_ms:.0f} / {latency.p99_ms:.0f}" if latency else "",
        load.fairness(report),
        load.frames_per_call(report, 2),
        load.server_cpu_ms(report),
        load.bench_cores(report),
        load.rest_of_machine(report),
    ]


def main() -> None:
    parser = load.camera_parser(
        "benchmarks.batching", __doc__, models="tiny, invert", duration=10.0, warmup=3.0
    )
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--max-batch", type=int, action="append", help="default: 8 and 1")
    args = parser.parse_args()
    rows = []
    for model in args.models or ["tiny", "invert"]:
        for max_batch in args.max_batch or [8, 1]:
            serve_args = ["--model", model, "--max-batch", str(max_batch)]
            serve_args += ["--max-sessions", str(max(8, args.sessions))]
            with running_server(*serve_args) as server:
                config = load.camera_config(
                    server.http_url, args, sessions=args.sessions, model=model
                )
                report = asyncio.run(run_bench(config, progress=sys.stderr)).report
            rows.append(row(model, max_batch, report))
    print(load.cameras_line(args, f"{args.sessions} WebSocket cameras"))
    header = ["model", "--max-batch", "sessions", "aggregate fps", "latency p50 / p99 ms"]
    header += ["Jain's index", "frames/model call", "server CPU ms/frame", "bench cores"]
    header += ["rest of machine, cores"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
