"""End-to-end speed of each model through a real server and the WebSocket client.

    .venv/bin/python -m benchmarks.stream [--model tiny --model invert] [--device cpu]

For each model, a `realtime serve` process on loopback and two runs:
- closed loop: send a frame, wait for its output, repeat (one frame in flight):
  ms per frame end to end, and the server's own per-hop timings;
- camera: 30 fps for a few seconds whatever the model's speed: output fps,
  capture-to-output latency and dropped frames.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.bench.harness import running_server
from realtime.bench.table import markdown_table
from realtime.clients.websocket import FrameOutput, StreamClient


async def closed_loop(url: str, model: str, frames: int) -> dict[str, float]:
    image = encode_image(gradient_image(640, 480), "jpeg")
    async with await StreamClient.connect(url, model=model) as client:
        round_trips, hops = [], []
        for _ in range(frames + 3):
            started = time.perf_counter()
            await client.send_frame(image)
            output = await client.receive()
            assert isinstance(output, FrameOutput), output
            round_trips.append((time.perf_counter() - started) * 1000)
            hops.append(output.timings_ms)
    round_trips, hops = round_trips[3:], hops[3:]  # after warm-up
    result = {"round trip": statistics.median(round_trips)}
    for hop in ("decode", "queue", "model", "encode"):
        result[hop] = statistics.median(timings[hop] for timings in hops)
    return result


async def camera(url: str, model: str, fps: float, seconds: float) -> dict[str, float]:
    image = encode_image(gradient_image(640, 480), "jpeg")
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    async with await StreamClient.connect(url, model=model) as client:
        total = int(fps * seconds)

        async def send() -> None:
            for index in range(1, total + 1):
                sent_at[index] = time.perf_counter()
                await client.send_frame(image)
                await asyncio.sleep(max(0.0, index / fps - (time.perf_counter() - start)))

        async def receive() -> FrameOutput:
            while True:
                output = await client.receive()
                assert isinstance(output, FrameOutput), output
                latencies.append((time.perf_counter() - sent_at[output.source_frame]) * 1000)
                if output.source_frame == total:
                    return output

        start = time.perf_counter()
        last = (await asyncio.gather(send(), receive()))[1]
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "outputs/s": len(latencies) / elapsed,
        "latency p50": latencies[len(latencies) // 2],
        "latency p95": latencies[int(len(latencies) * 0.95)],
        "dropped %": 100 * last.dropped_frames / total,
    }


async def measure(url: str, model: str, frames: int, fps: float, seconds: float) -> list[str]:
    loop = await closed_loop(url, model, frames)
    cam = await camera(url, model, fps, seconds)
    return [
        model,
        f"{loop['round trip']:.1f}",
        f"{1000 / loop['round trip']:.1f}",
        *(f"{loop[hop]:.2f}" for hop in ("decode", "queue", "model", "encode")),
        f"{cam['outputs/s']:.1f}",
        f"{cam['latency p50']:.0f} / {cam['latency p95']:.0f}",
        f"{cam['dropped %']:.0f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stream", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", action="append", dest="models")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=30, help="closed-loop frames per model")
    parser.add_argument("--fps", type=float, default=30.0, help="camera rate")
    parser.add_argument("--seconds", type=float, default=5.0, help="camera run length")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = {"REALTIME_CACHE": cache, "HF_HUB_OFFLINE": "1"}
        for model in args.models or ["tiny", "invert"]:
            with running_server("--model", model, "--device", args.device, env=env) as server:
                rows.append(
                    asyncio.run(measure(server.ws_url, model, args.frames, args.fps, args.seconds))
                )
    print(
        f"640x480 JPEG input, closed loop over {args.frames} frames; "
        f"camera at {args.fps:g} fps for {args.seconds:g} s\n"
    )
    header = ["model", "round trip ms", "frames/s", "decode ms", "queue ms", "model ms"]
    header += ["encode ms", "camera outputs/s", "camera latency p50 / p95 ms", "camera dropped %"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
