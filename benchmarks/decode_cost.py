"""What decoding an input image costs the server: CPU for hostile images, with and
without the limits `frames.codecs` checks from the headers; memory kept after a
burst of large frames, with and without handing it back (`malloc_trim`).

    .venv/bin/python -m benchmarks.decode_cost [--threads 2] [--frames 32]

Prints two tables. Hostile images: CPU seconds to decode each once. Bursts: 4K and
1080p frames (JPEG, PNG, WebP) decoded to the model's 512x512 on a thread pool as
the server's decode pool does, each format and variant in a fresh process: how much
larger the process stayed (RSS after the burst over RSS before) and CPU ms per decode.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from benchmarks.codecs import camera_like
from frames import codecs
from frames.codecs import BadImage, ImageFormat, decode_image, decode_to_size, encode_image
from frames.samples import gradient_image, many_scans_jpeg
from realtime.bench.harness import rss_bytes
from realtime.bench.table import markdown_table

SIZES = [(1920, 1080), (4096, 2160)]
FORMATS: list[ImageFormat] = ["jpeg", "png", "webp"]
UNBOUNDED = 2**62


def many_chunks_png(chunks: int) -> bytes:
    """A small PNG with `chunks` empty-ish metadata chunks before its pixels."""
    png = encode_image(gradient_image(256, 256), "png")
    payload = b"tIME" + bytes(7)
    chunk = struct.pack(">I", 7) + payload + struct.pack(">I", zlib.crc32(payload))
    return png[:33] + chunk * chunks + png[33:]


def cpu_seconds(work: Callable[[], object]) -> tuple[float, str]:
    started = time.process_time()
    try:
        work()
        outcome = "decoded"
    except BadImage as error:
        outcome = f"refused: {error}"
    return time.process_time() - started, outcome


def hostile_rows() -> list[list[str]]:
    rows = []
    samples = [
        ("JPEG 2048x2048, 2647 scans", many_scans_jpeg(2048, 2048)),
        ("JPEG 4096x2160, 2647 scans", many_scans_jpeg(4096, 2160)),
        ("PNG 256x256, 400,000 chunks", many_chunks_png(400_000)),
    ]
    for name, data in samples:
        codecs.MAX_MARKERS, saved = UNBOUNDED, codecs.MAX_MARKERS
        before, _ = cpu_seconds(partial(decode_image, data, max_scans=UNBOUNDED))
        codecs.MAX_MARKERS = saved
        after, outcome = cpu_seconds(partial(decode_image, data))
        rows.append(
            [name, f"{len(data) / 1024:.0f}", f"{before:.2f} s", f"{after * 1000:.1f} ms", outcome]
        )
    return rows


def burst(
    image_format: ImageFormat, width: int, height: int, release: bool, args: argparse.Namespace
) -> str:
    """In this process: RSS growth (MiB) and CPU ms per decode, as `growth ms`."""
    if not release:
        codecs.RELEASE_AFTER_BYTES = UNBOUNDED  # never: glibc keeps what it freed
    data = encode_image(camera_like(width, height), image_format)
    with ThreadPoolExecutor(args.threads) as pool:
        pool.submit(int).result()  # the threads exist before the baseline
        before = rss_bytes(os.getpid())
        started = time.process_time()
        list(pool.map(lambda d: decode_to_size(d, 512, 512), [data] * args.frames))
        ms = (time.process_time() - started) * 1000 / args.frames
        grown = (rss_bytes(os.getpid()) - before) / 2**20
    return f"{grown:.0f} {ms:.0f}"


def burst_rows(args: argparse.Namespace) -> list[list[str]]:
    rows = []
    for width, height in SIZES:
        for image_format in FORMATS:
            results = []
            for release in ("0", "1"):
                command = [
                    sys.executable,
                    "-m",
                    "benchmarks.decode_cost",
                    "--threads",
                    str(args.threads),
                ]
                command += [
                    "--frames",
                    str(args.frames),
                    "--child",
                    image_format,
                    str(width),
                    str(height),
                    release,
                ]
                results.append(
                    subprocess.run(
                        command, capture_output=True, text=True, check=True
                    ).stdout.split()
                )
            (kept, ms), (kept_released, ms_released) = results
            rows.append(
                [
                    f"{width}x{height}",
                    image_format,
                    f"+{kept} MiB",
                    f"+{kept_released} MiB",
                    f"{ms} ms",
                    f"{ms_released} ms",
                ]
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.decode_cost", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--threads", type=int, default=2, help="decode threads (default: 2)")
    parser.add_argument("--frames", type=int, default=32, help="frames in a burst (default: 32)")
    parser.add_argument(
        "--child", nargs=4, metavar=("FORMAT", "W", "H", "RELEASE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        image_format, width, height, release = args.child
        print(burst(image_format, int(width), int(height), release == "1", args))
        return
    header = ["image", "kB", "CPU, no limits", "CPU, limits", "outcome"]
    print(markdown_table(header, hostile_rows()))
    print()
    header = [
        "frames",
        "format",
        "RSS kept",
        "RSS kept, released",
        "CPU/decode",
        "CPU/decode, released",
    ]
    print(markdown_table(header, burst_rows(args)))


if __name__ == "__main__":
    main()
