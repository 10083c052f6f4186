"""`realtime cluster serve`: the server as Ray Serve replicas (realtime/cluster/), with
`realtime serve`'s options and the cluster's own. Needs the `cluster` extra."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from types import FrameType

from realtime.cli import serve as serve_command
from realtime.cli.arguments import non_negative_float, positive_float, positive_int
from realtime.server.logs import configure_logging


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = commands.add_parser(
        "cluster", help="run the server on a Ray cluster (needs realtime[cluster])"
    )
    actions = cluster.add_subparsers(dest="cluster_command", required=True)
    serve = actions.add_parser(
        "serve",
        help="deploy the server as Ray Serve replicas",
        description="Deploy the server as Ray Serve replicas behind Ray Serve's HTTP proxy "
        "(--host and --port are the proxy's), each with its own workers; a session stays "
        "on the replica that accepted it. Runs until SIGTERM or Ctrl-C, then removes the "
        "deployment. Every option shows its default.",
    )
    serve.set_defaults(run=run, command_parser=serve)
    ray = serve.add_argument_group("the Ray cluster")
    ray.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="the Ray cluster to deploy to (auto: the one this machine belongs to, "
        "or ray://HOST:10001) (default: none, start a Ray instance on this machine)",
    )
    ray.add_argument(
        "--replicas",
        type=positive_int,
        default=1,
        metavar="N",
        help="replicas, each holding --max-sessions sessions (default: %(default)s)",
    )
    ray.add_argument(
        "--max-replicas",
        type=positive_int,
        metavar="N",
        help="autoscale on ongoing sessions between --min-replicas and this many "
        "(default: none, --replicas replicas)",
    )
    ray.add_argument(
        "--min-replicas",
        type=positive_int,
        default=1,
        metavar="N",
        help="with --max-replicas: fewest replicas (default: %(default)s)",
    )
    ray.add_argument(
        "--target-sessions",
        type=positive_float,
        metavar="N",
        help="with --max-replicas: sessions per replica the autoscaler aims at "
        "(default: half of --max-sessions)",
    )
    ray.add_argument(
        "--autoscale",
        type=autoscaling_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --max-replicas: any other field of Ray Serve's autoscaling_config, "
        "e.g. upscale_delay_s=5 or downscale_delay_s=120; repeatable (default: Serve's own)",
    )
    ray.add_argument(
        "--replica-cpus",
        type=non_negative_float,
        default=1.0,
        metavar="N",
        help="CPUs Ray reserves for each replica (default: %(default)g)",
    )
    ray.add_argument(
        "--replica-gpus",
        type=non_negative_float,
        default=0.0,
        metavar="N",
        help="GPUs Ray gives each replica; with 1, --devices auto is that GPU "
        "(default: %(default)g)",
    )
    serve_command.add_options(serve)


def autoscaling_option(text: str) -> tuple[str, object]:
    """KEY=VALUE, the value as JSON where it parses (numbers), else as text; Serve
    checks both when the application is deployed."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return serve_command.run_quietly(_run, args, parser)


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # The replicas' devices are their machines', not this one's.
    entries = serve_command.served_models(args, parser, check_devices=False)
    if entries is None:
        return 1
    if args.max_replicas is not None and args.max_replicas < args.min_replicas:
        parser.error("--max-replicas must be at least --min-replicas")
    if args.autoscale and args.max_replicas is None:
        parser.error("--autoscale needs --max-replicas")
    configure_logging(args.log_level, args.log_format)
    try:
        import ray
        from ray import serve
    except ImportError:
        print(f"{parser.prog}: needs Ray Serve: pip install 'realtime[cluster]'", file=sys.stderr)
        return 1
    from ray.serve.config import AutoscalingConfig

    from realtime.cluster import proxy
    from realtime.cluster.replica import APP_NAME, Replicas, application

    flagged = {"min_replicas", "max_replicas", "target_ongoing_requests"}
    for key, _ in args.autoscale:
        if key in flagged:
            parser.error(f"--autoscale {key}: set it with its own flag (see --help)")
        if key not in AutoscalingConfig.model_fields:
            known = ", ".join(sorted(set(AutoscalingConfig.model_fields) - flagged))
            parser.error(
                f"--autoscale {key}: Ray Serve's autoscaling_config has no such "
                f"field; it has {known}"
            )

    config = serve_command.server_config(args, tuple(entry.info.id for entry in entries))
    replicas = Replicas(
        count=args.replicas,
        min_count=args.min_replicas,
        max_count=args.max_replicas,
        target_sessions=args.target_sessions,
        num_cpus=args.replica_cpus,
        num_gpus=args.replica_gpus,
        shutdown_timeout_s=args.shutdown_timeout,
        autoscaling=dict(args.autoscale),
    )
    # The proxies import it when they start: on a Ray instance started here, they inherit
    # it; on a cluster, set it where `ray start` runs (docs/architecture.md).
    os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", proxy.CALLBACK)
    local = args.ray_address is None
    ray.init(address=args.ray_address, include_dashboard=False if local else None)
    http_options: dict[str, object] = {
        "host": args.host,
        "port": args.port,
        "keep_alive_timeout_s": args.timeout_keep_alive,
    }
    if args.ssl_certfile:
        http_options.update(ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    stop = threading.Event()
    interrupted = False

    def on_signal(sig: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = interrupted or sig == signal.SIGINT
        stop.set()

    try:
        app = application(config, {entry.info.id: entry for entry in entries}, replicas)
    except ValueError as error:  # Serve's check of the options, such as --autoscale's values
        parser.error(str(error))
    try:
        serve.start(http_options=http_options)
        try:
            serve.run(app, name=APP_NAME, route_prefix="/")
        except RuntimeError as error:  # a replica could not start (a model did not load)
            print(f"{parser.prog}: {error}", file=sys.stderr)
            return 1
        scheme = "https" if args.ssl_certfile else "http"
        print(f"{parser.prog}: serving at {scheme}://{args.host}:{args.port}", flush=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        while not stop.wait(1.0):
            pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        # The replicas drain (their sessions hear `closing`) while the proxies stay up.
        serve.delete(APP_NAME)
        if local:
            serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
    return 130 if interrupted else 0
