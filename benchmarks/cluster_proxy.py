"""The cost of Ray Serve's proxy: one WebSocket session's frames through `realtime
cluster serve` (one replica) against straight to `realtime serve`, in the same run.

    .venv/bin/python -m benchmarks.cluster_proxy [--frames 300] [--rounds 2]

Both run `invert` on loopback. A closed loop: one 256 x 256 JPEG in flight, the next
sent as its output arrives. Per frame: the round trip (p50, p95, p99) and the CPU
time of the server's process, or of the cluster's Serve proxy and replica processes
(and of all its processes, Ray's own included), from /proc at both ends of each
round. The two alternate, `--rounds` times each, so both see the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.bench.harness import cpu_seconds, running_cluster, running_server
from realtime.bench.stats import latency_summary
from realtime.bench.table import markdown_table
from realtime.clients.websocket import FrameOutput, StreamClient

WARM_UP = 20


def descendants(pid: int) -> list[int]:
    """`pid`'s children, theirs, and so on (Linux: /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:  # it ended
                continue
            children.setdefault(int(stat[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        found += (kids := children.get(todo.pop(), []))
        todo += kids
    return found


def named(pids: Sequence[int], part: str) -> list[int]:
    """The processes among `pids` whose command line holds `part` (Ray names its actors)."""

    def cmdline(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
        except OSError:
            return ""

    return [pid for pid in pids if part in cmdline(pid)]


def total_cpu(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # it ended
            total += cpu_seconds(pid)
    return total


async def closed_loop(
    url: str, frames: int, groups: Mapping[str, Sequence[int]]
) -> tuple[list[float], dict[str, float]]:
    """Round trips in seconds, and each group's CPU ms per frame."""
    jpeg = encode_image(gradient_image(), "jpeg")
    async with await StreamClient.connect(url) as client:
        for _ in range(WARM_UP):
            await client.send_frame(jpeg)
            await client.receive()
        before = {name: total_cpu(pids) for name, pids in groups.items()}
        trips = []
        for _ in range(frames):
            started = time.perf_counter()
            await client.send_frame(jpeg)
            output = await asyncio.wait_for(client.receive(), 30)
            assert isinstance(output, FrameOutput), output
            trips.append(time.perf_counter() - started)
        after = {name: total_cpu(pids) for name, pids in groups.items()}
    return trips, {name: (after[name] - before[name]) / frames * 1000 for name in groups}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    serve_args = ("--model", "invert", "--max-sessions", "4", "--log-level", "warning")
    rows = []
    with (
        running_server(*serve_args) as plain,
        running_cluster(*serve_args, "--replicas", "1", "--replica-cpus", "0.5") as cluster,
    ):
        ray = descendants(cluster.process.pid)
        groups = {
            "plain": {"server": [plain.process.pid]},
            "cluster": {
                "proxy": named(ray, "ProxyActor"),
                "replica": named(ray, "ServeReplica"),
                "all of Ray": [cluster.process.pid, *ray],
            },
        }
        for _ in range(args.rounds):
            for name, server in (("plain", plain), ("cluster", cluster)):
                trips, cpu = asyncio.run(closed_loop(server.ws_url, args.frames, groups[name]))
                latency = latency_summary(trips)
                assert latency is not None
                cpu_cells = ", ".join(f"{group} {ms:.2f}" for group, ms in cpu.items())
                percentiles = (latency.p50_ms, latency.p95_ms, latency.p99_ms)
                rows.append([name, *(f"{ms:.2f}" for ms in percentiles), cpu_cells])
    header = ["server", "p50 ms", "p95 ms", "p99 ms", "CPU ms per frame"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
