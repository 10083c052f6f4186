"""The `realtime` command: `serve` runs the server, `pull` fetches a model's weights,
`models` lists the registry, `bench` load-tests a server with simulated cameras."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from models.base import ModelEntry
from models.loading import ModelLoadError
from models.registry import (
    DEFAULT_MODEL,
    REGISTRY,
    UnknownModelSpec,
    compiled,
    resolve_model,
    weight_sources,
)
from realtime.ice import IceServer
from realtime.server.config import ServerConfig
from realtime.server.logs import LOG_FORMATS, configure_logging
from session.limits import SessionLimits

DEFAULTS = ServerConfig()
LIMITS = SessionLimits()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="realtime", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="ID",
        help="a model to load and serve: a registry id (see `realtime models`), "
        "lcm-lora:BASE, or a hub id or folder of a supported diffusers pipeline; "
        f"repeatable, the first is the default ({DEFAULT_MODEL})",
    )
    serve.add_argument(
        "--vae",
        default="tiny",
        metavar="tiny|full|SOURCE",
        help="diffusion models decode with their family's tiny autoencoder (TAESD, the "
        "default), their own full VAE (slower), or the AutoencoderTiny at SOURCE",
    )
    serve.add_argument(
        "--compile",
        action="store_true",
        help="diffusion models: torch.compile their UNet (on CUDA with CUDA graphs); "
        "slower start, faster frames",
    )
    serve.add_argument(
        "--random-weights",
        action="store_true",
        help="diffusion models: their real architecture with random weights, built here "
        "(nothing downloaded); outputs are noise, for measuring speed",
    )
    serve.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    serve.add_argument("--max-sessions", type=_positive_int, default=DEFAULTS.max_sessions)
    serve.add_argument(
        "--max-message-mb",
        type=float,
        default=DEFAULTS.max_message_bytes / 2**20,
        help="largest WebSocket message in MiB; a larger one closes the session with 1009",
    )
    serve.add_argument(
        "--queue-timeout",
        type=_seconds_or_never,
        default=None,
        metavar="SECONDS",
        help="when the server is full, let a new session wait in line this long for a slot "
        '(WebSocket clients get {"type": "queued", "position": N} updates); '
        "default: refuse at once",
    )
    serve.add_argument(
        "--max-image-size",
        type=_positive_int,
        default=LIMITS.max_image_size,
        metavar="PIXELS",
        help="widest and tallest input image decoded; a larger one is a bad_frame",
    )
    serve.add_argument(
        "--max-messages-per-s",
        type=_positive_float,
        default=LIMITS.max_messages_per_s,
        metavar="N",
        help="control messages a session may send per second (with a burst of N); "
        "the excess is refused with rate_limited",
    )
    serve.add_argument(
        "--idle-timeout",
        type=_seconds_or_never,
        default=LIMITS.idle_timeout_s,
        metavar="SECONDS",
        help="close a session that sends no frame and no params for this long (0: never)",
    )
    serve.add_argument(
        "--max-session-duration",
        type=_seconds_or_never,
        default=LIMITS.max_duration_s,
        metavar="SECONDS",
        help="close every session this long after it started (0, the default: never)",
    )
    serve.add_argument("--workers-per-model", type=_positive_int, default=1)
    serve.add_argument(
        "--max-batch",
        type=_positive_int,
        default=DEFAULTS.max_batch,
        metavar="N",
        help="most sessions' frames a worker runs through its model in one call "
        "(cross-session batching); 1 turns batching off",
    )
    serve.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="a STUN or TURN server for WebRTC peers (stun:host:port, turn:host:port); repeatable",
    )
    serve.add_argument("--ice-username", help="username for the --ice-server TURN servers")
    serve.add_argument("--ice-credential", help="credential for the --ice-server TURN servers")
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="accept this API key (repeatable; also REALTIME_API_KEYS, comma-separated); "
        "without any, the server is open",
    )
    serve.add_argument("--max-sessions-per-key", type=_positive_int, default=None)
    serve.add_argument(
        "--max-token-ttl",
        type=float,
        default=DEFAULTS.max_token_ttl_s,
        help="longest lifetime in seconds of a POST /v1/tokens token",
    )
    serve.add_argument(
        "--ice-address",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="offer WebRTC host candidates on this address only (e.g. 127.0.0.1); repeatable",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="on SIGTERM, seconds to let sessions finish their frame before cutting them off",
    )
    serve.add_argument("--ssl-certfile", help="serve HTTPS (needed for a camera on another device)")
    serve.add_argument("--ssl-keyfile", help="the private key of --ssl-certfile")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text for people, json for log collectors (one object per line)",
    )

    pull = commands.add_parser(
        "pull", help="download a model's weights into the Hugging Face cache (HF_HOME)"
    )
    pull.add_argument("model", metavar="MODEL", help="as --model takes it: sd-turbo, a hub id, ...")

    commands.add_parser("models", help="list the models this server can serve")

    bench = commands.add_parser(
        "bench",
        help="load-test a server with simulated cameras",
        description="N simulated cameras stream to a server (--url) or to one started here "
        "(--serve; options after `--` go to `realtime serve`); reports delivered fps, "
        "client-side latency, drops, fairness and server CPU per output frame.",
    )
    target = bench.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
    target.add_argument(
        "--serve",
        action="store_true",
        help="start `realtime serve --model MODEL [-- SERVE_ARGS]` on a free loopback port",
    )
    bench.add_argument("--sessions", type=_positive_int, default=1, metavar="N")
    bench.add_argument(
        "--fps",
        type=_non_negative_float,
        default=30.0,
        help="each camera's frame rate; 0 sends back to back (WebSocket only)",
    )
    bench.add_argument(
        "--size", type=_size, default=(512, 512), metavar="WxH", help="camera frame size"
    )
    bench.add_argument(
        "--quality", type=_quality, default=80, help="JPEG quality of the WebSocket camera"
    )
    bench.add_argument(
        "--duration", type=_positive_float, default=10.0, metavar="S", help="seconds measured"
    )
    bench.add_argument(
        "--warmup",
        type=_non_negative_float,
        default=0.0,
        metavar="S",
        help="seconds the cameras stream before measuring starts",
    )
    bench.add_argument("--model", metavar="ID", help="the model the sessions ask for")
    bench.add_argument(
        "--params", type=_json_object, default={}, metavar="JSON", help="e.g. '{\"delay_ms\": 50}'"
    )
    bench.add_argument("--transport", choices=["websocket", "webrtc"], default="websocket")
    bench.add_argument("--api-key", metavar="KEY", help="for a server with API keys")
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    bench.add_argument("serve_args", nargs="*", metavar="-- SERVE_ARGS", help=argparse.SUPPRESS)

    args = parser.parse_args(argv)
    if args.command == "models":
        return list_models()
    if args.command == "bench":
        return run_bench(args, bench)
    if args.command == "pull":
        return pull_model(args.model)
    return serve_forever(args, parser)


def run_bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import asyncio

    from realtime.bench import BenchConfig, markdown_table, report_json, serving
    from realtime.bench import run_bench as bench

    if args.serve_args and not args.serve:
        parser.error(
            f"unexpected arguments {' '.join(args.serve_args)} (serve options need --serve)"
        )
    if args.fps == 0 and args.transport == "webrtc":
        parser.error("--fps 0 (back to back) is for the WebSocket only")
    width, height = args.size

    def config(url: str) -> BenchConfig:
        return BenchConfig(
            url=url,
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
                url = stack.enter_context(serving(serve_args)).url
            report = asyncio.run(bench(config(url.rstrip("/")), progress)).report
    except Exception as error:  # a refused session, a server that did not start: say it
        print(f"realtime bench: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.buffer.write(report_json(report) + b"\n")
    else:
        print(markdown_table(report))
    return 0


def list_models() -> int:
    for entry in REGISTRY.values():
        info = entry.info
        source = f" [{', '.join(entry.sources)}]" if entry.sources else ""
        print(
            f"{info.id:<12} {info.kind:<8} {info.width}x{info.height:<6} {info.description}{source}"
        )
    return 0


def pull_model(spec: str) -> int:
    """Download what `--model spec` loads; a hub id that is not a pipeline (a tiny VAE,
    a LoRA) is downloaded as it is."""
    from models.loading import download

    try:
        sources = weight_sources(spec)
        for source in sources:
            print(f"pulling {source}", flush=True)
            download(source)
        if sources == (spec,):
            # A pipeline also needs its family's tiny autoencoder; anything else is done.
            with contextlib.suppress(UnknownModelSpec, ModelLoadError):
                for source in resolve_model(spec).sources[1:]:
                    print(f"pulling {source}", flush=True)
                    download(source)
    except ModelLoadError as error:
        print(
            f"realtime pull: cannot download {error.source}: {error.reason.rstrip('.')}."
            " Pulling needs the Hugging Face Hub (huggingface.co, or a mirror named by"
            " HF_ENDPOINT) and HF_HUB_OFFLINE unset; copy the resulting cache (HF_HOME) to"
            " machines without access.",
            file=sys.stderr,
        )
        return 1
    if not sources:
        print(f"{spec} needs no download: it is built on this machine")
    else:
        print(f"{spec} is in the Hugging Face cache: `realtime serve --model {spec}`")
    return 0


def _resolve(
    spec: str, parser: argparse.ArgumentParser, *, random_weights: bool, vae: str
) -> ModelEntry:
    try:
        return resolve_model(spec, random_weights=random_weights, vae=vae)
    except UnknownModelSpec as error:
        parser.error(str(error))


def serve_forever(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    specs = tuple(dict.fromkeys(args.models or [DEFAULT_MODEL]))
    try:
        entries = [
            _resolve(spec, parser, random_weights=args.random_weights, vae=args.vae)
            for spec in specs
        ]
    except ModelLoadError as error:
        print(f"realtime serve: {error}", file=sys.stderr)
        return 1
    if args.compile:
        entries = [compiled(entry) for entry in entries]
    registry = {**REGISTRY, **{entry.info.id: entry for entry in entries}}
    models = tuple(entry.info.id for entry in entries)
    config = ServerConfig(
        models=models,
        device=args.device,
        max_sessions=args.max_sessions,
        queue_timeout_s=args.queue_timeout,
        max_message_bytes=int(args.max_message_mb * 2**20),
        workers_per_model=args.workers_per_model,
        max_batch=args.max_batch,
        ice_servers=tuple(
            IceServer(url, args.ice_username, args.ice_credential) for url in args.ice_server
        ),
        ice_addresses=tuple(args.ice_address),
        api_keys=tuple(args.api_key) + _keys_from_environment(),
        max_sessions_per_key=args.max_sessions_per_key,
        # One secret for every instance behind a load balancer; else random per process.
        token_secret=os.environ.get("REALTIME_TOKEN_SECRET", "").encode() or None,
        max_token_ttl_s=args.max_token_ttl,
        limits=SessionLimits(
            max_messages_per_s=args.max_messages_per_s,
            idle_timeout_s=args.idle_timeout,
            max_duration_s=args.max_session_duration,
            max_image_size=args.max_image_size,
        ),
    )
    configure_logging(args.log_level, args.log_format)

    # Imported here so that `realtime models` and `--help` answer without loading torch.
    import uvicorn

    from realtime.server.app import create_app

    failed = False

    def stop_on_load_failure() -> None:
        nonlocal failed
        failed = True
        server.should_exit = True

    app = create_app(config, registry=registry, on_load_failed=stop_on_load_failure)

    class DrainingServer(uvicorn.Server):
        """uvicorn would close every WebSocket at once with 1012: first close the
        listening sockets, then let the sessions end gracefully."""

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for listening in self.servers:
                listening.close()
            await app.state.server.drain(args.shutdown_timeout)
            await super().shutdown(sockets)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            # uvicorn re-raises caught signals once stopped, so the process would end
            # "killed by SIGTERM"; a drained SIGTERM is an orderly stop: exit status 0.
            if sig == signal.SIGTERM:
                self._captured_signals.remove(sig)

    server = DrainingServer(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            ws="websockets-sansio",
            ws_max_size=config.max_message_bytes,
            # Frames are JPEG, PNG or WebP: deflating them costs CPU and saves nothing.
            ws_per_message_deflate=False,
            loop="auto",
            log_config=None,
            log_level=args.log_level,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            timeout_graceful_shutdown=args.shutdown_timeout,
        )
    )
    server.run()
    return 1 if failed else 0


def _keys_from_environment() -> tuple[str, ...]:
    return tuple(
        key.strip() for key in os.environ.get("REALTIME_API_KEYS", "").split(",") if key.strip()
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        size = int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be WIDTHxHEIGHT, e.g. 512x512, got {text}"
        ) from None
    if min(size) < 16 or max(size) > 4096:
        raise argparse.ArgumentTypeError(f"each side must be 16 to 4096 pixels, got {text}")
    return size


def _quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 1 to 100, got {value}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, e.g. {"delay_ms": 50}')
    return value


def _seconds_or_never(text: str) -> float | None:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (never) or more, got {text}")
    return value or None
