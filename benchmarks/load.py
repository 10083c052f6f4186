"""What the camera-load benchmarks share (concurrency, batching, backpressure): their
options, the BenchConfig those give, and the cells their tables have in common."""

from __future__ import annotations

import argparse

from realtime.bench.config import BenchConfig
from realtime.bench.report import BenchReport, rest_of_machine_cores


def camera_parser(
    module: str, doc: str, *, models: str, duration: float, warmup: float
) -> argparse.ArgumentParser:
    """`python -m MODULE`'s options: --model (repeatable; `models` by default),
    --duration, --warmup, and each camera's --fps and --size (see `camera_config`)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n")[0])
    parser.add_argument("--model", action="append", dest="models", help=f"default: {models}")
    parser.add_argument("--duration", type=float, default=duration, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=warmup)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="256x256")
    return parser


def camera_config(url: str, args: argparse.Namespace, *, sessions: int, model: str) -> BenchConfig:
    """`sessions` WebSocket cameras streaming to `model` at `url`, as `args` asks."""
    width, height = (int(side) for side in args.size.split("x"))
    return BenchConfig(
        url,
        sessions=sessions,
        fps=args.fps,
        width=width,
        height=height,
        duration_s=args.duration,
        model=model,
        warmup_s=args.warmup,
    )


def cameras_line(args: argparse.Namespace, cameras: str = "WebSocket cameras") -> str:
    """What the cameras did, above the table."""
    return (
        f"{cameras} at {args.fps:g} fps each, {args.size} JPEG q80, "
        f"{args.duration:g} s measured after {args.warmup:g} s of warm-up\n"
    )


def fairness(report: BenchReport) -> str:
    return "n/a" if report.fairness is None else f"{report.fairness:.3f}"


def server_cpu_ms(report: BenchReport) -> str:
    """The server's CPU ms per output frame, from its /metrics."""
    server = report.server
    return f"{server.cpu_per_frame * 1000:.1f}" if server and server.cpu_per_frame else ""


def frames_per_call(report: BenchReport, digits: int) -> str:
    """Frames the server sent per model call: how full its batches were."""
    server = report.server
    return (
        f"{server.frames_sent / server.model_calls:.{digits}f}"
        if server and server.model_calls
        else ""
    )


def bench_cores(report: BenchReport) -> str:
    """The cores this process (the cameras) kept busy."""
    return f"{report.client.cpu_seconds / report.duration_s:.2f}"


def rest_of_machine(report: BenchReport) -> str:
    """The cores the rest of the machine kept busy during the window, or n/a."""
    rest = rest_of_machine_cores(report)
    return "n/a" if rest is None else f"{rest:.2f}"
