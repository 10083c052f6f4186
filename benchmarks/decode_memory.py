"""Memory kept after a burst of large frames, with and without handing freed memory
back to the system (`malloc_trim` after a large decode, in `frames.codecs`).

    .venv/bin/python -m benchmarks.decode_memory [--threads 2] [--frames 32]

Decodes a burst of 4K frames (JPEG, PNG, WebP) to the model's 512x512 on a thread
pool as the server's decode pool does, each format and variant in a fresh process,
and prints a table: how much larger the process stayed (RSS after the burst, over
RSS before), and ms per decode.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.codecs import camera_like
from frames import codecs
from frames.codecs import ImageFormat, decode_to_size, encode_image
from realtime.bench.harness import rss_bytes
from realtime.bench.table import markdown_table

SIZES = [(1920, 1080), (4096, 2160)]
FORMATS: list[ImageFormat] = ["jpeg", "png", "webp"]


def burst(
    image_format: ImageFormat, width: int, height: int, release: bool, args: argparse.Namespace
) -> str:
    """In this process: RSS growth (MiB) and ms per decode, as `growth ms`."""
    if not release:
        codecs.RELEASE_AFTER_BYTES = sys.maxsize  # never: glibc keeps what it freed
    data = encode_image(camera_like(width, height), image_format)
    with ThreadPoolExecutor(args.threads) as pool:
        pool.submit(int).result()  # the threads exist before the baseline
        before = rss_bytes(os.getpid())
        started = time.perf_counter()
        list(pool.map(lambda d: decode_to_size(d, 512, 512), [data] * args.frames))
        ms = (time.perf_counter() - started) * 1000 * args.threads / args.frames
        grown = (rss_bytes(os.getpid()) - before) / 2**20
    return f"{grown:.0f} {ms:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.decode_memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--threads", type=int, default=2, help="decode threads (default: 2)")
    parser.add_argument("--frames", type=int, default=32, help="frames in the burst (default: 32)")
    parser.add_argument(
        "--child", nargs=4, metavar=("FORMAT", "W", "H", "RELEASE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        image_format, width, height, release = args.child
        print(burst(image_format, int(width), int(height), release == "1", args))  # type: ignore[arg-type]
        return
    rows = []
    for width, height in SIZES:
        for image_format in FORMATS:
            results = []
            for release in ("0", "1"):
                command = [
                    sys.executable,
                    "-m",
                    "benchmarks.decode_memory",
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
    header = [
        "frames",
        "format",
        "RSS kept",
        "RSS kept, released",
        "ms/decode",
        "ms/decode, released",
    ]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
