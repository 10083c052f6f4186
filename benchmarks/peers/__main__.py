"""`python -m benchmarks.peers`: every server in turn, then the table (see the package)."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import peers
from benchmarks.peers.measure import measure
from benchmarks.peers.servers import DEFAULT_VENV, SERVERS, peer_venv, start
from realtime.bench.table import markdown_row, markdown_table
from realtime.ice import restrict_host_candidates

ROOT = Path(__file__).resolve().parents[2]
"""The repository: tests/loopback-only, and where `-m benchmarks.peers` imports from."""

HEADER = [
    "server",
    "video back",
    "frames measured",
    "delivered fps",
    "lost",
    "latency p50 / p95 / p99 ms",
    "p50 last 10 s ms",
    "max ms",
    "server CPU ms/frame",
    "server CPU % of a core",
]


def measure_all(args: argparse.Namespace, python: Path, skipped: list[str]) -> None:
    restrict_host_candidates(["127.0.0.1"])
    rows, notes = [], list(skipped)
    with tempfile.TemporaryDirectory() as folder:
        logs = Path(folder)
        for name in args.servers:
            if name == "fastrtc" and any(note.startswith("fastrtc") for note in skipped):
                continue
            print(f"{name}: {args.duration:g} s at {args.fps:g} fps ...", file=sys.stderr)
            try:
                with start(name, python, logs) as server:
                    run = asyncio.run(
                        measure(server, args.fps, args.duration, args.warmup, args.grace)
                    )
            except Exception as error:  # one server failing does not lose the others
                notes.append(f"{name} failed: {error!r}"[:2000])
                continue
            rows.append(run.row())
            print(markdown_row(rows[-1]), file=sys.stderr)
            if run.unreadable:
                notes.append(f"{name}: {run.unreadable} frames back had no readable index")
            notes.append(
                f"{name}: {run.frames_in} frames back in all, {len(run.received_at)} distinct"
            )
    print(
        f"\n512x512 camera at {args.fps:g} fps for {args.duration:g} s over WebRTC (VP8), "
        f"one session; latency over the frames sent after {args.warmup:g} s; "
        f"lost = not back {args.grace:g} s after the end\n"
    )
    print(markdown_table(HEADER, rows))
    print()
    for note in notes:
        print(f"- {note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers", description=(peers.__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of camera")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds left out of latency")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--grace", type=float, default=5.0, help="seconds to wait for stragglers")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--peer-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument(
        "--no-namespace", action="store_true", help="measure on the normal network namespace"
    )
    parser.add_argument("--measuring", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.servers = [name for name in args.servers.split(",") if name]
    for name in args.servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}: choose from {', '.join(SERVERS)}")
    if args.duration <= args.warmup:
        parser.error("--duration must be longer than --warmup")
    python, note = peer_venv(args.peer_venv)
    if args.measuring or args.no_namespace:
        measure_all(args, python, [note] if note else [])
        return
    # Set-up done on the normal network (PyPI); measure where only loopback exists.
    command = ["sh", str(ROOT / "tests/loopback-only"), sys.executable, "-m", "benchmarks.peers"]
    command += [*sys.argv[1:], "--measuring"]
    sys.exit(subprocess.run(command, cwd=ROOT).returncode)


if __name__ == "__main__":
    main()
