"""Server overhead: the server's CPU per frame with `invert` against the codec floor.

    .venv/bin/python -m benchmarks.overhead [--duration 10] [--size 512x512] [--quality 80]

One `realtime serve --model invert` process on loopback and one WebSocket
session at a time, sending the bench's synthetic camera frames (JPEG at
`--quality`) with outputs asked at the same quality:

- camera 30 fps: `realtime.bench`, paced at 30 fps;
- camera flat out: `realtime.bench` with --fps 0, frames back to back, never
  waiting for outputs (the server reads every frame, decodes the newest one
  whenever its decoding is free, and drops those overtaken before that);
- closed loop: one frame in flight, the next sent as its output arrives: as
  many frames as the server can turn round, none dropped.

The server's CPU seconds and frame counts come from its /metrics
(process_cpu_seconds_total, realtime_frames_total) at both ends of each run.
The floor, measured in this process in the same run: the CPU time of one
`frames.codecs.decode_to_size` (to the model's 256x256) plus one
`encode_image` of the output at the same quality, over the same frames in a
bare loop. `invert` itself is `255 - pixels`, a few microseconds, so what is
left above the floor is the server.

Two more numbers under the table:
- the floor paced at 30 fps: the same decode and encode one frame every 33 ms,
  as the 30 fps camera makes the server do them, with the caches gone cold
  between frames;
- flat out, the CPU per frame dropped before decoding: the run's CPU less its
  outputs at the closed loop's cost per output, over the frames it dropped
  (an estimate from two runs; a frame overtaken after its decode counts as
  dropped too, so it is an upper bound).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from frames.codecs import decode_to_size, encode_image
from realtime.bench.camera import camera_jpegs, websocket_url
from realtime.bench.config import BenchConfig
from realtime.bench.harness import running_server
from realtime.bench.report import machine_busy_seconds, rest_of_machine_cores
from realtime.bench.run import run_bench
from realtime.bench.scrape import scrape
from realtime.bench.table import markdown_table
from realtime.clients.websocket import FrameOutput, StreamClient

MODEL_SIZE = 256  # invert's width and height


def floor_ms(jpegs: list[bytes], quality: int, seconds: float, fps: float = 0) -> float:
    """CPU ms of one decode (to the model's size) plus one encode, in a bare loop, back
    to back or one frame every 1/`fps` s."""
    count = 0
    cpu = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.thread_time()
        pixels = decode_to_size(jpegs[count % len(jpegs)], MODEL_SIZE, MODEL_SIZE)
        encode_image(pixels, "jpeg", quality)
        cpu += time.thread_time() - started
        count += 1
        if fps:
            time.sleep(1 / fps)
    return cpu / count * 1000


async def closed_loop(config: BenchConfig, jpegs: list[bytes]) -> dict[str, float]:
    async with await StreamClient.connect(websocket_url(config.url), model=config.model) as client:
        await client.update_params(**config.params)
        for jpeg in jpegs[:5]:  # warm-up
            await client.send_frame(jpeg)
            await client.receive()
        before = scrape(config, "invert")
        own_cpu, busy = time.process_time(), machine_busy_seconds() or 0.0
        started = time.perf_counter()
        outputs = 0
        while time.perf_counter() - started < config.duration_s:
            await client.send_frame(jpegs[outputs % len(jpegs)])
            message = await client.receive()
            assert isinstance(message, FrameOutput), message
            outputs += 1
        window = time.perf_counter() - started
        own_cpu, busy = time.process_time() - own_cpu, (machine_busy_seconds() or 0.0) - busy
        after = scrape(config, "invert")
    assert before is not None and after is not None
    received = after.frames.get("received", 0) - before.frames.get("received", 0)
    dropped = after.frames.get("dropped", 0) - before.frames.get("dropped", 0)
    cpu = after.cpu_seconds - before.cpu_seconds
    return {"outputs/s": outputs / window, "received/s": received / window, "cpu": cpu,
            "outputs": outputs, "received": received, "dropped": dropped,
            "rest": (busy - own_cpu - cpu) / window}  # fmt: skip


async def camera(config: BenchConfig) -> dict[str, float]:
    report = (await run_bench(config)).report
    assert report.server is not None, "the server exports no process metrics"
    return {
        "outputs/s": report.aggregate_fps,
        "received/s": report.server.frames_received / report.duration_s,
        "cpu": report.server.cpu_seconds,
        "outputs": report.outputs,
        "received": report.server.frames_received,
        "dropped": report.server.frames_dropped,
        "rest": rest_of_machine_cores(report) or float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--size", default="512x512")
    parser.add_argument("--quality", type=int, default=80)
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    base = BenchConfig(
        "",
        width=width,
        height=height,
        quality=args.quality,
        duration_s=args.duration,
        model="invert",
        params={"output_quality": args.quality},
        warmup_s=1.0,
    )
    jpegs = camera_jpegs(base)
    with running_server("--model", "invert") as server:
        config = replace(base, url=server.http_url)
        floor = floor_ms(jpegs, args.quality, 3.0)
        paced_floor = floor_ms(jpegs, args.quality, 3.0, fps=30)
        modes: dict[str, Callable[[], Coroutine[Any, Any, dict[str, float]]]] = {
            "camera 30 fps": lambda: camera(replace(config, fps=30)),
            "camera flat out": lambda: camera(replace(config, fps=0)),
            "closed loop": lambda: closed_loop(config, jpegs),
        }
        runs: dict[str, dict[str, float]] = {}
        for mode, measure in modes.items():
            server.wait_until_idle()
            runs[mode] = asyncio.run(measure())
        floor_after = floor_ms(jpegs, args.quality, 3.0)
    floor = min(floor, floor_after)  # the quieter of the two measurements
    rows = []
    for mode, run in runs.items():
        per_output = run["cpu"] / run["outputs"] * 1000
        rows.append(
            [
                mode,
                f"{run['outputs/s']:.1f}",
                f"{run['received/s']:.1f}",
                f"{run['dropped'] / run['received'] * 100:.1f} %",
                f"{per_output:.2f}",
                f"{floor:.2f}",
                f"{per_output / floor:.2f}x",
                f"{run['rest']:.2f}",
            ]
        )
    print(
        f"invert, {args.size} JPEG q{args.quality} in, 256x256 JPEG q{args.quality} out, "
        f"one WebSocket session, {args.duration:g} s per run\n"
    )
    header = ["mode", "outputs/s", "frames received/s", "dropped", "server CPU ms per output"]
    header += ["floor ms (decode + encode)", "ratio", "rest of machine, cores"]
    print(markdown_table(header, rows))
    flat, closed = runs["camera flat out"], runs["closed loop"]
    per_closed_output = closed["cpu"] / closed["outputs"]
    per_drop = (flat["cpu"] - flat["outputs"] * per_closed_output) / max(flat["dropped"], 1)
    camera_30 = runs["camera 30 fps"]["cpu"] / runs["camera 30 fps"]["outputs"] * 1000
    print(
        f"\n- floor paced at 30 fps (cold caches): {paced_floor:.2f} ms; the 30 fps camera's "
        f"CPU per output is {camera_30 / paced_floor:.2f}x it"
        f"\n- flat out, CPU per frame dropped before decoding: {per_drop * 1000:.3f} ms "
        f"({per_drop * 1000 / floor * 100:.1f} % of the floor)"
    )


if __name__ == "__main__":
    main()
