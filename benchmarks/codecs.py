"""JPEG codecs compared: simplejpeg (libjpeg-turbo, no Image object) against Pillow.

    .venv/bin/python -m benchmarks.codecs

Prints ms per call (median of many) for decode, decode-to-256 and encode (4:2:0,
quality 90) at camera sizes. The server's `frames.codecs` uses the faster one.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
import simplejpeg
from PIL import Image

from frames.codecs import encode_image
from frames.frame import Pixels
from frames.geometry import fit
from realtime.bench.table import markdown_table


def camera_like(width: int, height: int) -> Pixels:
    """A smooth image with some texture, encoding like a webcam frame."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 128 + 90 * np.sin(x / 37) * np.cos(y / 53)
    texture = np.random.default_rng(0).normal(0, 12, (height, width))
    channels = [base + texture, base[::-1] + texture, 255 - base + texture]
    return np.stack(channels, axis=-1).clip(0, 255).astype(np.uint8)


def ms_per_call(work: Callable[[], object], repeat: int = 60) -> float:
    work()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def pillow_encode(pixels: Pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def pillow_decode(data: bytes) -> Pixels:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def pillow_decode_to_256(data: bytes) -> Pixels:
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (256, 256))  # Pillow's own DCT scaling
    return fit(np.asarray(image.convert("RGB")), 256, 256)


def measure(width: int, height: int) -> list[str]:
    pixels = camera_like(width, height)
    data = encode_image(pixels, "jpeg", 90)

    def simplejpeg_decode_to_256() -> Pixels:
        decoded = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=256, min_height=256)
        return fit(decoded, 256, 256)

    times = [
        ms_per_call(lambda: simplejpeg.decode_jpeg(data, colorspace="RGB")),
        ms_per_call(lambda: pillow_decode(data)),
        ms_per_call(simplejpeg_decode_to_256),
        ms_per_call(lambda: pillow_decode_to_256(data)),
        ms_per_call(lambda: encode_image(pixels, "jpeg", 90)),
        ms_per_call(lambda: pillow_encode(pixels)),
    ]
    return [f"{width}x{height}", f"{len(data) / 1024:.0f}", *(f"{t:.2f} ms" for t in times)]


def main() -> None:
    argparse.ArgumentParser(
        prog="python -m benchmarks.codecs", description=__doc__.split("\n")[0]
    ).parse_args()
    rows = [measure(w, h) for w, h in [(256, 256), (512, 512), (640, 480), (1280, 720)]]
    header = ["size", "JPEG kB", "decode simplejpeg", "decode Pillow", "to 256 simplejpeg"]
    header += ["to 256 Pillow", "encode simplejpeg", "encode Pillow"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
