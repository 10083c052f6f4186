"""CPU cost of WebRTC video encoding per output frame, with aiortc's own encoders.

    .venv/bin/python -m benchmarks.video_codecs

The server encodes every output frame it sends on a WebRTC track (and decodes
every camera frame it receives). This prints the median ms to encode one frame
with VP8 (libvpx) and H.264 (libx264) at the model sizes, at the starting
bitrates aiortc picks (VP8 500 kbps, H.264 1 Mbps; both then follow the
receiver's REMB estimate).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from frames.frame import Pixels
from frames.video import pixels_to_video_frame
from realtime.bench.table import markdown_table

CODECS = {
    "VP8": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    "H264": RTCRtpCodecParameters(
        mimeType="video/H264",
        clockRate=90000,
        payloadType=102,
        parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
    ),
}


def moving_frames(size: int, count: int) -> list[Pixels]:
    """A drifting texture: every frame differs, as a generated stream does."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = []
    for index in range(count):
        shift = index * 3.0
        base = 128 + 90 * np.sin((x + shift) / 17) * np.cos((y - shift) / 23)
        noise = np.random.default_rng(index).normal(0, 10, (size, size))
        channels = [base + noise, 255 - base + noise, base[::-1] + noise]
        frames.append(np.stack(channels, axis=-1).clip(0, 255).astype(np.uint8))
    return frames


def encode_ms(codec: str, size: int, count: int = 90) -> tuple[float, float]:
    encoder = get_encoder(CODECS[codec])
    frames = moving_frames(size, count)
    samples, sent_bytes = [], 0
    for index, pixels in enumerate(frames):
        frame = pixels_to_video_frame(pixels, index * 3000)  # 30 fps in the 90 kHz clock
        started = time.perf_counter()
        payloads, _ = encoder.encode(frame, index == 0)
        samples.append((time.perf_counter() - started) * 1000)
        sent_bytes += sum(len(payload) for payload in payloads)
    kbps = sent_bytes * 8 / (count / 30) / 1000
    return statistics.median(samples[10:]), kbps


def main() -> None:
    argparse.ArgumentParser(
        prog="python -m benchmarks.video_codecs", description=__doc__.split("\n")[0]
    ).parse_args()
    rows = []
    for codec in CODECS:
        for size in (256, 512):
            ms, kbps = encode_ms(codec, size)
            rows.append([codec, f"{size}x{size}", f"{ms:.2f}", f"{kbps:.0f}"])
    print(markdown_table(["codec", "size", "encode ms/frame", "kbit/s at 30 fps"], rows))


if __name__ == "__main__":
    main()
