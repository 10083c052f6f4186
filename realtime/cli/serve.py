"""`realtime serve`: its options, the ServerConfig they make, and the run."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from frames.annotators import face_models_folder
from models.base import ModelEntry, ModelInfo
from models.loading import ModelLoadError, resolve_devices
from models.notices import silence_library_notices
from models.registry import DEFAULT_MODEL, REGISTRY, UnknownModelSpec, compiled, resolve_model
from realtime.cli.arguments import (
    add_part_options,
    devices,
    fal_app,
    positive_float,
    positive_int,
    seconds_or_never,
    web_origin,
)
from realtime.ice import IceServer, default_host_addresses
from realtime.server.config import Listen, ServerConfig
from realtime.server.logs import LOG_FORMATS, configure_logging
from realtime.server.origins import allowed_hosts
from session.limits import SessionLimits

DEFAULTS = ServerConfig()
LISTEN = Listen()
LIMITS = SessionLimits()


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Load and warm the models, then serve them over WebSocket and WebRTC "
        "with the web demo at /. Every option shows its default.",
    )
    serve.set_defaults(run=run, command_parser=serve)
    add_options(serve)


def add_options(serve: argparse.ArgumentParser) -> None:
    """The server's options (`realtime cluster serve` takes them too)."""
    where = serve.add_argument_group("where it listens")
    where.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 for every interface, where without --api-key "
        "anyone who can reach the port may use the server (default: %(default)s)",
    )
    where.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default: %(default)s)"
    )
    where.add_argument(
        "--ssl-certfile",
        help="serve HTTPS with this certificate, needed for a camera on another device "
        "(default: none, plain HTTP)",
    )
    where.add_argument("--ssl-keyfile", help="the private key of --ssl-certfile (default: none)")
    where.add_argument(
        "--limit-concurrency",
        type=positive_int,
        default=LISTEN.limit_concurrency,
        metavar="N",
        help="connections at once (HTTP and WebSocket) past which new HTTP requests are "
        "answered 503; keep it under the open-file limit (default: %(default)s)",
    )
    where.add_argument(
        "--timeout-keep-alive",
        type=positive_int,
        default=LISTEN.timeout_keep_alive_s,
        metavar="SECONDS",
        help="close an HTTP connection idle this long between requests (default: %(default)s)",
    )
    where.add_argument(
        "--header-timeout",
        type=positive_float,
        default=LISTEN.header_timeout_s,
        metavar="SECONDS",
        help="close a connection whose request headers are not all in this long after it "
        "opened or after its last response (slow or silent clients) (default: %(default)g)",
    )

    models = serve.add_argument_group("models")
    models.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="ID",
        help="a model to load and serve: a registry id (see `realtime models`), "
        "lcm-lora:BASE, or a hub id or folder of a supported diffusers pipeline; "
        f"repeatable, the first is the default (default: {DEFAULT_MODEL})",
    )
    models.add_argument(
        "--vae",
        default="tiny",
        metavar="tiny|full|SOURCE",
        help="diffusion models decode with their family's tiny autoencoder (TAESD), their "
        "own full VAE (slower), or the AutoencoderTiny at SOURCE (default: %(default)s)",
    )
    add_part_options(models)
    models.add_argument(
        "--compile",
        action="store_true",
        help="diffusion models: torch.compile their UNet (on CUDA with CUDA graphs); "
        "slower start, faster frames (default: off)",
    )
    models.add_argument(
        "--random-weights",
        action="store_true",
        help="diffusion models: their real architecture with random weights, built here "
        "(nothing downloaded); outputs are noise, for measuring speed (default: off)",
    )
    models.add_argument(
        "--devices",
        "--device",
        type=devices,
        default=DEFAULTS.devices,
        metavar="auto|cpu|cuda:0,cuda:1,...",
        help="where models run: a worker per device for each model, and each session pinned "
        "to the least busy worker of its model; auto is every CUDA device, else the CPU "
        "(default: auto)",
    )
    models.add_argument(
        "--workers-per-model",
        type=positive_int,
        default=DEFAULTS.workers_per_model,
        metavar="N",
        help="copies of each model on each device, each on a thread of its own "
        "(default: %(default)s)",
    )
    models.add_argument(
        "--max-batch",
        type=positive_int,
        default=DEFAULTS.max_batch,
        metavar="N",
        help="most sessions' frames a worker runs through its model in one call "
        "(cross-session batching); 1 turns batching off (default: %(default)s)",
    )

    sessions = serve.add_argument_group("sessions and their limits")
    sessions.add_argument(
        "--max-sessions",
        type=positive_int,
        default=DEFAULTS.max_sessions,
        metavar="N",
        help="sessions at once over all models; one more is refused with server_full "
        "(default: %(default)s)",
    )
    sessions.add_argument(
        "--queue-timeout",
        type=seconds_or_never,
        default=DEFAULTS.queue_timeout_s,
        metavar="SECONDS",
        help="when the server is full, let a new session wait in line this long for a slot "
        '(WebSocket clients get {"type": "queued", "position": N} updates) '
        "(default: none, refuse at once)",
    )
    sessions.add_argument(
        "--max-message-mb",
        type=float,
        default=DEFAULTS.max_message_bytes / 2**20,
        metavar="MIB",
        help="largest WebSocket message; a larger one closes the session with 1009 "
        "(default: %(default)g)",
    )
    sessions.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=DEFAULTS.max_body_bytes,
        metavar="BYTES",
        help="largest HTTP request body (a WebRTC offer, a token request); a larger one "
        "is refused with 413 too_large as soon as it passes this (default: %(default)s)",
    )
    sessions.add_argument(
        "--max-image-size",
        type=positive_int,
        default=LIMITS.max_image_size,
        metavar="PIXELS",
        help="widest and tallest input image decoded; a larger one is a bad_frame "
        "(default: %(default)s)",
    )
    sessions.add_argument(
        "--max-image-pixels",
        type=positive_int,
        default=LIMITS.max_image_pixels,
        metavar="PIXELS",
        help="most pixels (width x height) in an input image decoded, a 4K frame by default; "
        "a larger one is a bad_frame (default: %(default)s)",
    )
    sessions.add_argument(
        "--decode-threads",
        type=positive_int,
        default=DEFAULTS.decode_threads,
        metavar="N",
        help="threads decoding input images, shared by all sessions, each decoding one "
        "image at a time; min(4, CPUs) by default (default: %(default)s)",
    )
    sessions.add_argument(
        "--max-messages-per-s",
        type=positive_float,
        default=LIMITS.max_messages_per_s,
        metavar="N",
        help="control messages a session may send per second (with a burst of N); "
        "the excess is refused with rate_limited (default: %(default)g)",
    )
    sessions.add_argument(
        "--handshake-timeout",
        type=seconds_or_never,
        default=LIMITS.handshake_timeout_s,
        metavar="SECONDS",
        help="close a session whose client sends no first frame (no first params, for "
        "type-to-image) this long after ready, so idle connections cannot hold slots; "
        "0: never (default: %(default)g)",
    )
    sessions.add_argument(
        "--idle-timeout",
        type=seconds_or_never,
        default=LIMITS.idle_timeout_s,
        metavar="SECONDS",
        help="close a session that sends no frame and no params for this long; 0: never "
        "(default: %(default)g)",
    )
    sessions.add_argument(
        "--max-session-duration",
        type=seconds_or_never,
        default=LIMITS.max_duration_s,
        metavar="SECONDS",
        help="close every session this long after it started; 0: never (default: never)",
    )
    sessions.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM, how long sessions may finish their frame before they are cut off "
        "(default: %(default)g)",
    )

    access = serve.add_argument_group("access")
    access.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="accept this API key (repeatable; also REALTIME_API_KEYS, comma-separated) "
        "(default: none, the server is open to whoever reaches it)",
    )
    access.add_argument(
        "--max-sessions-per-key",
        type=positive_int,
        default=DEFAULTS.max_sessions_per_key,
        metavar="N",
        help="sessions one API key (and its tokens) may hold at once (default: no limit)",
    )
    access.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        type=web_origin,
        metavar="ORIGIN",
        help="let pages of this other site use the API: CORS grants its requests (WHIP/WHEP "
        "from a browser), and with no API key they pass as its own pages do "
        "(e.g. https://app.example.com, or * for any); repeatable (default: none)",
    )
    access.add_argument(
        "--max-sessions-per-address",
        type=positive_int,
        default=DEFAULTS.max_sessions_per_address,
        metavar="N",
        help="sessions one client IP address may hold at once, for open servers where keys "
        "do not tell clients apart; behind a reverse proxy, have it set X-Forwarded-For "
        "(default: no limit)",
    )
    access.add_argument(
        "--max-token-ttl",
        type=float,
        default=DEFAULTS.max_token_ttl_s,
        metavar="SECONDS",
        help="longest lifetime of a POST /v1/tokens token (default: %(default)g)",
    )

    webrtc = serve.add_argument_group("WebRTC")
    webrtc.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="a STUN or TURN server for WebRTC peers (stun:host:port, turn:host:port); "
        "repeatable (default: none, host candidates only)",
    )
    webrtc.add_argument(
        "--ice-username", help="username for the --ice-server TURN servers (default: none)"
    )
    webrtc.add_argument(
        "--ice-credential", help="credential for the --ice-server TURN servers (default: none)"
    )
    webrtc.add_argument(
        "--ice-address",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="offer WebRTC host candidates on this address only (e.g. 127.0.0.1); "
        "repeatable (default: every interface but loopback, and loopback too when --host "
        "is a loopback address)",
    )
    webrtc.add_argument(
        "--max-viewers",
        type=positive_int,
        default=DEFAULTS.max_viewers,
        metavar="N",
        help="WHEP viewers of one session at once; one more is refused with viewer_limit "
        "(HTTP 429) (default: %(default)s)",
    )
    webrtc.add_argument(
        "--connect-timeout",
        type=positive_float,
        default=DEFAULTS.connect_timeout_s,
        metavar="SECONDS",
        help="a WebRTC peer (a session or a WHEP viewer) that has not connected this long "
        "after its answer is dropped, freeing its slot and sockets (default: %(default)g)",
    )

    fal = serve.add_argument_group("fal's realtime clients (docs/fal.md)")
    fal.add_argument(
        "--fal-app",
        action="append",
        default=[],
        type=fal_app,
        metavar="APP=MODEL",
        help="serve the fal app APP (owner/alias[/subpath], as fal's clients name it) with "
        "MODEL, over the default table (fal-ai/fast-turbo-diffusion/image-to-image=sd-turbo, "
        "...); repeatable (default: the table)",
    )

    logs = serve.add_argument_group("logs")
    logs.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default: %(default)s)",
    )
    logs.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text for people, json for log collectors, one object per line (default: %(default)s)",
    )


Command = Callable[[argparse.Namespace, argparse.ArgumentParser], int]


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return run_quietly(_run, args, parser)


def run_quietly(command: Command, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`command`, where until the server takes the signals over SIGTERM exits 0 and
    Ctrl-C 130, quietly."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return command(args, parser)
    except KeyboardInterrupt:
        return 130


def _exit_on_sigterm(sig: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    entries = served_models(args, parser)
    if entries is None:
        return 1
    registry = {**REGISTRY, **{entry.info.id: entry for entry in entries}}
    configure_logging(args.log_level, args.log_format)

    # Imported here so that `realtime models` and `--help` answer without loading torch.
    from realtime.server.serving import serve

    listen = Listen(
        host=args.host,
        port=args.port,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        log_level=args.log_level,
        shutdown_timeout_s=args.shutdown_timeout,
        limit_concurrency=args.limit_concurrency,
        timeout_keep_alive_s=args.timeout_keep_alive,
        header_timeout_s=args.header_timeout,
    )
    return serve(server_config(args, tuple(entry.info.id for entry in entries)), registry, listen)


def served_models(
    args: argparse.Namespace, parser: argparse.ArgumentParser, *, check_devices: bool = True
) -> list[ModelEntry] | None:
    """The models the options name, checked with the fal apps (and the devices, when
    they are this machine's); None (after saying why) when they cannot be served."""
    silence_library_notices()
    command = parser.prog
    specs = tuple(dict.fromkeys(args.models or [DEFAULT_MODEL]))
    try:
        entries = [
            _resolve(
                spec,
                parser,
                random_weights=args.random_weights,
                vae=args.vae,
                controls=tuple(args.controls),
                ip_adapter=args.ip_adapter,
            )
            for spec in specs
        ]
    except ModelLoadError as error:
        print(f"{command}: {error}", file=sys.stderr)
        return None
    if any("face" in _controls(entry.info) for entry in entries):
        try:
            face_models_folder()  # the face control's landmarker: fetched, or say how
        except RuntimeError as error:
            print(f"{command}: --control face: {error}", file=sys.stderr)
            return None
    if args.compile:
        entries = [compiled(entry) for entry in entries]
    try:
        if check_devices:
            resolve_devices(args.devices)
    except ValueError as error:
        print(f"{command}: --devices: {error}", file=sys.stderr)
        return None
    served = {entry.info.id for entry in entries}
    for app, model in args.fal_app:
        if model not in served:
            parser.error(f"--fal-app {app}={model}: {model} is not served; add --model {model}")
    return entries


def server_config(args: argparse.Namespace, models: tuple[str, ...]) -> ServerConfig:
    return ServerConfig(
        models=models,
        devices=args.devices,
        max_sessions=args.max_sessions,
        queue_timeout_s=args.queue_timeout,
        max_message_bytes=int(args.max_message_mb * 2**20),
        max_body_bytes=args.max_body_bytes,
        workers_per_model=args.workers_per_model,
        max_batch=args.max_batch,
        decode_threads=args.decode_threads,
        ice_servers=tuple(
            IceServer(url, args.ice_username, args.ice_credential) for url in args.ice_server
        ),
        ice_addresses=tuple(args.ice_address) or default_host_addresses(args.host),
        max_viewers=args.max_viewers,
        connect_timeout_s=args.connect_timeout,
        api_keys=tuple(args.api_key) + _keys_from_environment(),
        max_sessions_per_key=args.max_sessions_per_key,
        max_sessions_per_address=args.max_sessions_per_address,
        # One secret for every instance behind a load balancer; else random per process.
        token_secret=os.environ.get("REALTIME_TOKEN_SECRET", "").encode() or None,
        max_token_ttl_s=args.max_token_ttl,
        cors_origins=tuple(args.cors_origin),
        fal_apps=dict(args.fal_app),
        allowed_hosts=allowed_hosts(args.host),
        limits=SessionLimits(
            max_messages_per_s=args.max_messages_per_s,
            handshake_timeout_s=args.handshake_timeout,
            idle_timeout_s=args.idle_timeout,
            max_duration_s=args.max_session_duration,
            max_image_size=args.max_image_size,
            max_image_pixels=args.max_image_pixels,
        ),
    )


def _resolve(
    spec: str,
    parser: argparse.ArgumentParser,
    *,
    random_weights: bool,
    vae: str,
    controls: tuple[str, ...],
    ip_adapter: str | None,
) -> ModelEntry:
    try:
        return resolve_model(
            spec, random_weights=random_weights, vae=vae, controls=controls, ip_adapter=ip_adapter
        )
    except UnknownModelSpec as error:
        parser.error(str(error))


def _controls(info: ModelInfo) -> Sequence[str]:
    """The controls a model takes (its `control` param's choices)."""
    return next((spec.choices or () for spec in info.params if spec.name == "control"), ())


def _keys_from_environment() -> tuple[str, ...]:
    return tuple(
        key.strip() for key in os.environ.get("REALTIME_API_KEYS", "").split(",") if key.strip()
    )
