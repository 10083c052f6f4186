"""Soak: minutes of session churn against one server, watching it for leaks.

    .venv/bin/python -m benchmarks.soak [--minutes 30] [--model invert] [--clients 8]

Starts a `realtime serve` process on loopback and keeps `--clients` WebSocket
clients churning against it: each opens a session, streams frames for a few
seconds, and leaves in one of three ways, chosen at random (seeded):

- clean:  reads every output, then closes with a close handshake;
- reset:  reads, then vanishes with a TCP reset (SO_LINGER 0, no close frame);
- stall:  stops reading while it keeps sending noise frames and asks for PNG
          outputs (about 200 kB each), so that the socket buffers fill and the
          server's sends block within seconds; then it drops the connection,
          half of the time with a reset and half with a bare FIN.

Sessions are bounded in number (`--clients` at once) and in time (at most
`--max-session-s` each). Every `--sample-s` seconds it reads the server's RSS
(/proc/PID/status) and open file descriptors (/proc/PID/fd). At the end it
lets the clients finish, waits for /healthz to count 0 sessions, prints a
table, and exits 1 when a session leaked, a frame went unaccounted for, or RSS
or fds grew beyond a bound (RSS from the end of the warm-up, the first 20 % of
the run; fds from before the first client). Not part of `make test`: it takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field

import httpx

from frames.codecs import encode_image
from frames.samples import gradient_image, noise_image
from realtime.bench.harness import ServerProcess, rss_bytes, running_server
from realtime.bench.table import markdown_table
from realtime.clients.websocket import ErrorMessage, FrameOutput, ServerError, StreamClient

KINDS = ("clean", "reset", "stall")


@dataclass
class Sample:
    at: float
    rss_bytes: int
    fds: int


@dataclass
class Counts:
    opened: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    ended: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    refused: int = 0
    frames_sent: int = 0
    outputs: int = 0
    errors: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)


def read_proc(pid: int) -> tuple[int, int]:
    """The process's resident memory in bytes and its number of open file descriptors."""
    return rss_bytes(pid), len(os.listdir(f"/proc/{pid}/fd"))


def drop(client: StreamClient, reset: bool) -> None:
    """Vanish without a close handshake: a TCP reset, or a bare FIN."""
    transport = client.connection.transport
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


@dataclass(frozen=True)
class Frames:
    smooth: bytes = encode_image(gradient_image(256, 256), "jpeg")
    noise: bytes = encode_image(noise_image(256, 256), "jpeg")


async def one_session(
    url: str, kind: str, seconds: float, fps: float, frames: Frames, rng: random.Random, c: Counts
) -> None:
    try:
        client = await StreamClient.connect(url)
    except ServerError as error:
        if error.error.code != "server_full":
            raise
        c.refused += 1
        await asyncio.sleep(0.5)
        return
    c.opened[kind] += 1
    frame = frames.smooth
    if kind == "stall":
        await client.update_params(output_format="png")
        frame = frames.noise

    async def send() -> None:
        started = time.monotonic()
        index = 0
        while (elapsed := time.monotonic() - started) < seconds:
            await client.send_frame(frame)
            c.frames_sent += 1
            index += 1
            await asyncio.sleep(max(0.0, index / fps - elapsed))

    async def read() -> None:
        while True:
            message = await client.receive()
            if isinstance(message, FrameOutput):
                c.outputs += 1
            elif isinstance(message, ErrorMessage):
                c.errors.append(f"{kind}: server said {message.code}: {message.message}")

    reader = asyncio.create_task(read()) if kind != "stall" else None
    try:
        await send()
    finally:
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    if kind == "clean":
        await asyncio.wait_for(client.close(), 15)
    else:
        drop(client, reset=kind == "reset" or rng.random() < 0.5)
    c.ended[kind] += 1


async def churn(
    url: str,
    deadline: float,
    args: argparse.Namespace,
    frames: Frames,
    rng: random.Random,
    c: Counts,
) -> None:
    while time.monotonic() < deadline:
        kind = rng.choice(KINDS)
        seconds = rng.uniform(0.2, args.max_session_s)
        try:
            await one_session(url, kind, seconds, args.fps, frames, rng, c)
        except Exception as error:
            c.errors.append(f"{kind}: {type(error).__name__}: {error}")
            await asyncio.sleep(0.5)


def drain_log(server: ServerProcess, c: Counts) -> None:
    """Keep the server's ERROR lines and tracebacks; let the rest go (the log
    reader keeps every line, and checks them all on each new one)."""
    count = len(server.log)
    lines = server.log[:count]
    del server.log[:count]
    c.server_errors += [line for line in lines if " ERROR " in line or "Traceback" in line]


async def sample_every(
    server: ServerProcess, every: float, samples: list[Sample], c: Counts
) -> None:
    while True:
        rss, fds = read_proc(server.process.pid)
        samples.append(Sample(time.monotonic(), rss, fds))
        drain_log(server, c)
        await asyncio.sleep(every)


async def server_sessions(http: httpx.AsyncClient) -> int:
    return int((await http.get("/healthz")).json()["sessions"])


async def server_frames(http: httpx.AsyncClient) -> dict[str, float]:
    """The server's own frame counts, by outcome (GET /metrics)."""
    totals: dict[str, float] = {}
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("realtime_frames_total{"):
            labels, value = line.rsplit(" ", 1)
            outcome = labels.split('outcome="')[1].split('"')[0]
            totals[outcome] = totals.get(outcome, 0) + float(value)
    return totals


async def soak(server: ServerProcess, args: argparse.Namespace) -> int:
    pid, http_url, ws_url = server.process.pid, server.http_url, server.ws_url
    rng = random.Random(args.seed)
    frames = Frames()
    counts = Counts()
    samples: list[Sample] = []
    await asyncio.sleep(1)  # let the server settle after start-up
    idle_rss, idle_fds = read_proc(pid)
    started = time.monotonic()
    duration = args.minutes * 60
    warm_until = started + duration * 0.2
    sampler = asyncio.create_task(sample_every(server, args.sample_s, samples, counts))
    clients = [
        churn(ws_url, started + duration, args, frames, random.Random(rng.random()), counts)
        for _ in range(args.clients)
    ]
    await asyncio.gather(*clients)
    churned_s = time.monotonic() - started
    async with httpx.AsyncClient(base_url=http_url) as http:
        settle_by = time.monotonic() + 30
        while (left := await server_sessions(http)) and time.monotonic() < settle_by:
            await asyncio.sleep(0.5)
        outcomes = await server_frames(http)
    await asyncio.sleep(2)
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    end_rss, end_fds = read_proc(pid)
    drain_log(server, counts)
    warm = [s for s in samples if s.at >= warm_until] or samples
    warm_rss = warm[0].rss_bytes
    max_rss = max(s.rss_bytes for s in samples)
    max_fds = max(s.fds for s in samples)

    mib = 2**20
    opened, ended = sum(counts.opened.values()), sum(counts.ended.values())
    print(
        f"{churned_s / 60:.1f} min of churn against `realtime serve --model {args.model}`, "
        f"{args.clients} clients at once, {args.fps:g} fps, sessions of 0.2-"
        f"{args.max_session_s:g} s, {len(samples)} samples every {args.sample_s:g} s\n"
    )
    growth = [
        [
            "RSS MiB",
            f"{idle_rss / mib:.1f}",
            f"{warm_rss / mib:.1f}",
            f"{max_rss / mib:.1f}",
            f"{end_rss / mib:.1f}",
            f"{(end_rss - warm_rss) / mib:+.1f} (from warm-up)",
            f"{args.max_rss_growth_mb:g}",
        ],
        [
            "open fds",
            idle_fds,
            warm[0].fds,
            max_fds,
            end_fds,
            f"{end_fds - idle_fds:+d} (from idle)",
            args.max_fd_growth,
        ],
    ]
    print(
        markdown_table(["server", "idle", "after warm-up", "max", "end", "growth", "bound"], growth)
    )
    print()
    sessions: list[list[object]] = [
        [kind, counts.opened[kind], counts.ended[kind], "", ""] for kind in KINDS
    ]
    sessions.append(["all", opened, ended, counts.frames_sent, counts.outputs])
    header = ["sessions", "opened", "ended", "frames sent", "outputs received"]
    print(markdown_table(header, sessions))
    print()
    received, sent, dropped, bad, failed = (
        int(outcomes.get(key, 0)) for key in ("received", "sent", "dropped", "bad", "failed")
    )
    unaccounted = received - sent - dropped - bad - failed
    print(
        f"server's frames: {received} received = {sent} sent + {dropped} dropped + {bad} bad"
        f" + {failed} failed + {unaccounted} unaccounted"
    )
    print(
        f"refused (server full): {counts.refused}; client errors: {len(counts.errors)}; "
        f"server ERROR log lines: {len(counts.server_errors)}; "
        f"server sessions at the end: {left}"
    )
    for error in counts.errors[:10] + counts.server_errors[:10]:
        print(f"  {error}")

    failures = []
    if left:
        failures.append(f"{left} sessions still open on the server")
    if end_rss - warm_rss > args.max_rss_growth_mb * mib:
        failures.append(f"RSS grew {(end_rss - warm_rss) / mib:.1f} MiB after warm-up")
    if unaccounted:
        failures.append(f"{unaccounted} frames neither sent, dropped, bad nor failed")
    if end_fds - idle_fds > args.max_fd_growth:
        failures.append(f"{end_fds - idle_fds} more open fds than before the first client")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--model", default="invert")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clients", type=int, default=8, help="sessions at once")
    parser.add_argument("--fps", type=float, default=15.0, help="frames each client sends")
    parser.add_argument("--max-session-s", type=float, default=6.0)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--max-rss-growth-mb", type=float, default=64.0)
    parser.add_argument("--max-fd-growth", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as cache,
        running_server(
            "--model",
            args.model,
            "--device",
            args.device,
            "--max-sessions",
            str(args.clients + 4),  # a reset session's slot is freed a moment later
            env={"REALTIME_CACHE": cache, "HF_HUB_OFFLINE": "1"},
        ) as server,
    ):
        return asyncio.run(soak(server, args))


if __name__ == "__main__":
    sys.exit(main())
