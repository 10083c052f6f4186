"""The `realtime` command, a thin layer over the server, the load generator and the
model registry: `serve` runs the server, `models` lists what it can serve, `pull`
fetches a model's weights, `bench` load-tests a server with simulated cameras, `cluster
serve` runs the server as Ray Serve replicas."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from realtime.cli import bench, cluster, models, serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realtime", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add_command(commands)
    cluster.add_command(commands)
    models.add_commands(commands)
    bench.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.run(args, args.command_parser)
    return status
