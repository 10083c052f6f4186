"""`realtime bench`: load-test a server with simulated cameras."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from models.registry import DEFAULT_MODEL
from realtime.cli.arguments import (
    json_object,
    non_negative_float,
    positive_float,
    positive_int,
    quality,
    size,
)
from realtime.cli.serve import DEFAULTS


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="load-test a server with simulated cameras",
        description="N simulated cameras stream to a server (--url) or to one started here "
        "(--serve; options after `--` go to `realtime serve`); reports delivered fps, "
        "client-side latency, drops, fairness and server CPU per output frame.",
    )
    bench.set_defaults(run=run, command_parser=bench)
    target = bench.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
    target.add_argument(
        "--serve",
        action="store_true",
        help="start `realtime serve --model MODEL [-- SERVE_ARGS]` on a free loopback port",
    )
    bench.add_argument(
        "--sessions", type=positive_int, default=1, metavar="N", help="(default: %(default)s)"
    )
    bench.add_argument(
        "--fps",
        type=non_negative_float,
        default=30.0,
        help="each camera's frame rate; 0 sends back to back, WebSocket only "
        "(default: %(default)g)",
    )
    bench.add_argument(
        "--size",
        type=size,
        default=(512, 512),
        metavar="WxH",
        help="camera frame size (default: 512x512)",
    )
    bench.add_argument(
        "--quality",
        type=quality,
        default=80,
        help="JPEG quality of the WebSocket camera (default: %(default)s)",
    )
    bench.add_argument(
        "--duration",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="seconds measured (default: %(default)g)",
    )
    bench.add_argument(
        "--warmup",
        type=non_negative_float,
        default=0.0,
        metavar="S",
        help="seconds the cameras stream before measuring starts (default: %(default)g)",
    )
    bench.add_argument(
        "--model", metavar="ID", help="the model the sessions ask for (default: the server's)"
    )
    bench.add_argument(
        "--params", type=json_object, default={}, metavar="JSON", help="e.g. '{\"delay_ms\": 50}'"
    )
    bench.add_argument(
        "--transport",
        choices=["websocket", "webrtc"],
        default="websocket",
        help="(default: %(default)s)",
    )
    bench.add_argument("--api-key", metavar="KEY", help="for a server with API keys")
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    bench.add_argument("serve_args", nargs="*", metavar="-- SERVE_ARGS", help=argparse.SUPPRESS)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from realtime.bench.config import BenchConfig
    from realtime.bench.harness import running_server
    from realtime.bench.report import markdown_table, report_json
    from realtime.bench.run import run_bench

    if args.serve_args and not args.serve:
        parser.error(
            f"unexpected arguments {' '.join(args.serve_args)} (serve options need --serve)"
        )
    if args.fps == 0 and args.transport == "webrtc":
        parser.error("--fps 0 (back to back) is for the WebSocket only")
    width, height = args.size
    progress = None if args.quiet else sys.stderr
    try:
        with contextlib.ExitStack() as stack:
            url = args.url
            if args.serve:
                serve_args = ["--model", args.model or DEFAULT_MODEL, *args.serve_args]
                if "--max-sessions" not in serve_args:
                    serve_args += ["--max-sessions", str(max(args.sessions, DEFAULTS.max_sessions))]
                if not args.quiet:
                    print(f"starting realtime serve {' '.join(serve_args)}", file=sys.stderr)
                url = stack.enter_context(running_server(*serve_args)).http_url
            config = BenchConfig(
                url=url.rstrip("/"),
                sessions=args.sessions,
                fps=args.fps,
                width=width,
                height=height,
                quality=args.quality,
                duration_s=args.duration,
                model=args.model,
                params=args.params,
                transport=args.transport,
                api_key=args.api_key,
                warmup_s=args.warmup,
            )
            report = asyncio.run(run_bench(config, progress)).report
    except Exception as error:  # a refused session, a server that did not start: say it
        print(f"realtime bench: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.buffer.write(report_json(report) + b"\n")
    else:
        print(markdown_table(report))
    return 0
