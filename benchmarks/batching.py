"""Batching: aggregate fps with cross-session batching on (--max-batch 8) and off (1).

    .venv/bin/python benchmarks/batching.py [--sessions 8] [--duration 10] [--model tiny]

For each model and each `--max-batch`, a fresh `realtime serve --model M
--max-batch N` process on loopback and `--sessions` WebSocket cameras
(`realtime.bench`, 30 fps each, 256x256 JPEG q80: the models' own size) after
a warm-up. "frames/model call" is the server's frames sent over its worker's
model calls (realtime_worker_batches_total), so it shows how full the batches
really were.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from realtime.bench import (  # noqa: E402
    BenchConfig,
    BenchReport,
    rest_of_machine_cores,
    run_bench,
    serving,
)


def row(model: str, max_batch: int, report: BenchReport) -> list[str]:
    latency = report.latency
    server = report.server
    return [
        model,
        str(max_batch),
        str(report.sessions),
        f"{report.aggregate_fps:.1f}",
        f"{latency.p50_ms:.0f} / {latency.p99_ms:.0f}" if latency else "",
        "n/a" if report.fairness is None else f"{report.fairness:.3f}",
        f"{server.frames_sent / server.model_calls:.2f}" if server and server.model_calls else "",
        f"{server.cpu_per_frame * 1000:.1f}" if server and server.cpu_per_frame else "",
        f"{report.client.cpu_seconds / report.duration_s:.2f}",
        "n/a" if (rest := rest_of_machine_cores(report)) is None else f"{rest:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", dest="models", help="default: tiny, invert")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--max-batch", type=int, action="append", help="default: 8 and 1")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="256x256")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    rows = []
    for model in args.models or ["tiny", "invert"]:
        for max_batch in args.max_batch or [8, 1]:
            serve_args = ["--model", model, "--max-batch", str(max_batch)]
            serve_args += ["--max-sessions", str(max(8, args.sessions))]
            with serving(serve_args) as server:
                config = BenchConfig(
                    server.url,
                    sessions=args.sessions,
                    fps=args.fps,
                    width=width,
                    height=height,
                    duration_s=args.duration,
                    model=model,
                    warmup_s=args.warmup,
                )
                report = asyncio.run(run_bench(config, progress=sys.stderr)).report
            rows.append(row(model, max_batch, report))
    print(
        f"{args.sessions} WebSocket cameras at {args.fps:g} fps each, {args.size} JPEG q80, "
        f"{args.duration:g} s measured after {args.warmup:g} s of warm-up\n"
    )
    print(
        "| model | --max-batch | sessions | aggregate fps | latency p50 / p99 ms | Jain's index "
        "| frames/model call | server CPU ms/frame | bench cores | rest of machine, cores |"
    )
    print("|" + "---|" * 10)
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
