"""Concurrency: 1, 4, 16 and 64 cameras at once, with `invert` and with `tiny`.

    .venv/bin/python -m benchmarks.concurrency [--duration 8] [--sessions 1 --sessions 4]
    .venv/bin/python -m benchmarks.concurrency --model invert --size 512x512

One `realtime serve --model M --max-sessions 64` process per model on
loopback; for each count, that many WebSocket cameras (`realtime.bench`, 30
fps each, `--size` JPEG q80, default 256x256: the models' own size) stream at
once after a warm-up. Aggregate fps is every output received in the window
over its length; p99 is over every output of every session; Jain's index is
over the sessions' delivered fps (1: all equal; 1/n: one session gets
everything). The default server settings otherwise: one worker per model,
cross-session batches of up to 8.
"""

from __future__ import annotations

import asyncio
import sys

from benchmarks import load
from realtime.bench.harness import running_server
from realtime.bench.report import BenchReport
from realtime.bench.run import run_bench
from realtime.bench.table import markdown_table


def row(report: BenchReport) -> list[str]:
    latency = report.latency
    return [
        str(report.model),
        str(report.sessions),
        f"{report.aggregate_fps:.1f}",
        f"{report.fps_min:.1f} / {report.fps_mean:.1f} / {report.fps_max:.1f}",
        f"{latency.p50_ms:.0f}" if latency else "",
        f"{latency.p99_ms:.0f}" if latency else "",
        load.fairness(report),
        f"{report.dropped_percent:.0f}",
        str(report.late_frames),
        load.server_cpu_ms(report),
        load.frames_per_call(report, 1),
        load.bench_cores(report),
        load.rest_of_machine(report),
    ]


def main() -> None:
    parser = load.camera_parser(
        "benchmarks.concurrency", __doc__, models="invert, tiny", duration=8.0, warmup=2.0
    )
    parser.add_argument("--sessions", type=int, action="append", help="default: 1 4 16 64")
    args = parser.parse_args()
    counts = args.sessions or [1, 4, 16, 64]
    rows = []
    for model in args.models or ["invert", "tiny"]:
        with running_server("--model", model, "--max-sessions", str(max(counts))) as server:
            for sessions in counts:
                server.wait_until_idle()
                config = load.camera_config(server.http_url, args, sessions=sessions, model=model)
                rows.append(row(asyncio.run(run_bench(config, progress=sys.stderr)).report))
    print(load.cameras_line(args))
    header = ["model", "sessions", "aggregate fps", "per-session fps min / mean / max"]
    header += ["p50 ms", "p99 ms", "Jain's index", "dropped %", "camera frames late"]
    header += ["server CPU ms/frame", "frames/model call", "bench cores", "rest of machine, cores"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
