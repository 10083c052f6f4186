"""Concurrency: 1, 4, 16 and 64 cameras at once, with `invert` and with `tiny`.

    .venv/bin/python benchmarks/concurrency.py [--duration 8] [--sessions 1 --sessions 4]
    .venv/bin/python benchmarks/concurrency.py --model invert --size 512x512

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


def row(report: BenchReport) -> list[str]:
    latency = report.latency
    server = report.server
    return [
        str(report.model),
        str(report.sessions),
        f"{report.aggregate_fps:.1f}",
        f"{report.fps_min:.1f} / {report.fps_mean:.1f} / {report.fps_max:.1f}",
        f"{latency.p50_ms:.0f}" if latency else "",
        f"{latency.p99_ms:.0f}" if latency else "",
        "n/a" if report.fairness is None else f"{report.fairness:.3f}",
        f"{report.dropped_percent:.0f}",
        str(report.late_frames),
        f"{server.cpu_per_frame * 1000:.1f}" if server and server.cpu_per_frame else "",
        f"{server.frames_sent / server.model_calls:.1f}" if server and server.model_calls else "",
        f"{report.client.cpu_seconds / report.duration_s:.2f}",
        _cores(rest_of_machine_cores(report)),
    ]


def _cores(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", dest="models", help="default: invert, tiny")
    parser.add_argument("--sessions", type=int, action="append", help="default: 1 4 16 64")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="256x256")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    counts = args.sessions or [1, 4, 16, 64]
    rows = []
    for model in args.models or ["invert", "tiny"]:
        with serving(["--model", model, "--max-sessions", str(max(counts))]) as server:
            for sessions in counts:
                server.wait_until_idle()
                config = BenchConfig(
                    server.url,
                    sessions=sessions,
                    fps=args.fps,
                    width=width,
                    height=height,
                    duration_s=args.duration,
                    model=model,
                    warmup_s=args.warmup,
                )
                rows.append(row(asyncio.run(run_bench(config, progress=sys.stderr)).report))
    print(
        f"WebSocket cameras at {args.fps:g} fps each, {args.size} JPEG q80, "
        f"{args.duration:g} s measured after {args.warmup:g} s of warm-up\n"
    )
    print(
        "| model | sessions | aggregate fps | per-session fps min / mean / max | p50 ms | p99 ms "
        "| Jain's index | dropped % | camera frames late | server CPU ms/frame "
        "| frames/model call | bench cores | rest of machine, cores |"
    )
    print("|" + "---|" * 13)
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
