"""Sample images for the tests and the benchmarks: deterministic (seeded) pixels of a
known character, so that what a codec or a similarity check does to them is known."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PIL import Image

from frames.frame import Pixels


def gradient_image(width: int = 256, height: int = 256, seed: int = 0) -> Pixels:
    """A smooth colourful image: JPEG keeps it within a few levels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phases = rng.uniform(0, 2 * np.pi, 3)
    channels = [
        127.5 + 110 * np.sin(x / width * 2 * np.pi + phases[c]) * np.cos(y / height * np.pi + c)
        for c in range(3)
    ]
    return np.stack(channels, axis=-1).clip(0, 255).astype(np.uint8)


def noise_image(width: int = 256, height: int = 256, seed: int = 0) -> Pixels:
    """Incompressible pixels: the largest encoded frames for their size."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


FACE_JPEG = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "face.jpg"
"""A real face (NASA's public-domain portrait of Eileen Collins), for the face control."""


def face_image() -> Pixels:
    """The face of FACE_JPEG: (160, 160, 3) RGB, the face filling its middle half."""
    with Image.open(FACE_JPEG) as image:
        return np.asarray(image.convert("RGB"))


def moving_face(
    count: int, size: int = 256, travel: float = 0.25, turn_degrees: float = 10.0
) -> list[tuple[Pixels, float]]:
    """A face moving across a plain grey frame: `count` frames of size x size, each with
    the face's horizontal offset from the middle in pixels. The face (half the frame wide)
    slides from -travel * size to +travel * size, tilting from -turn_degrees to +turn_degrees."""
    face = Image.fromarray(face_image()).resize((size // 2, size // 2), Image.Resampling.LANCZOS)
    frames = []
    for index in range(count):
        progress = index / max(count - 1, 1) * 2 - 1  # -1 .. 1
        offset = round(progress * travel * size)
        frame = Image.new("RGB", (size, size), (128, 128, 128))
        turned = face.rotate(
            progress * turn_degrees, Image.Resampling.BILINEAR, fillcolor=(128, 128, 128)
        )
        frame.paste(turned, (size // 4 + offset, size // 4))
        frames.append((np.asarray(frame), float(offset)))
    return frames


def many_scans_jpeg(width: int, height: int, refinements: int = 13) -> bytes:
    """A valid progressive JPEG (mid-grey) of the most scans a 3-component image may
    have: each AC coefficient of each component in a scan of its own, then refined
    one bit per scan (1 + 3 * 63 * (1 + `refinements`) scans: 2647 at most). Each
    scan codes its blocks as end-of-band runs, so the file stays small (190 KB at
    4096x4096) while libjpeg-turbo passes over every block once per scan: seconds of
    CPU. A scan bomb, for the tests and benchmarks of the decode limits."""
    blocks = -(-width // 8) * -(-height // 8)
    components = (1, 2, 3)
    one_code = bytes([1] + [0] * 15)  # a Huffman table of one symbol, coded "0"
    parts = [
        b"\xff\xd8",
        _segment(0xDB, b"\x00" + b"\x01" * 64),
        _segment(
            0xC2,
            struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00",
        ),
        # DC table 0: difference category 0 only; AC table 0: EOB14 (a run of 2^14 + 14 bits) only.
        _segment(0xC4, b"\x00" + one_code + b"\x00" + b"\x10" + one_code + b"\xe0"),
        # The DC scan, interleaved: every block's difference is 0.
        _segment(0xDA, b"\x03\x01\x00\x02\x00\x03\x00\x00\x00\x00"),
        _entropy_coded("0" * blocks * len(components)),
    ]
    longest_runs = _entropy_coded(("0" + "1" * 14) * -(-blocks // 32767))  # runs of 32767 blocks
    for component in components:
        for k in range(1, 64):
            # First Al = refinements, then refine one bit a scan: (Ah, Al) = (n, n - 1).
            for ah_al in [refinements, *((n << 4) | (n - 1) for n in range(refinements, 0, -1))]:
                parts += [_segment(0xDA, bytes([1, component, 0x00, k, k, ah_al])), longest_runs]
    return b"".join([*parts, b"\xff\xd9"])


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _entropy_coded(bits: str) -> bytes:
    """Bits ("0"/"1") as a scan's data: padded with ones, each 0xFF byte stuffed with 0x00."""
    bits += "1" * (-len(bits) % 8)
    data = int(bits, 2).to_bytes(len(bits) // 8) if bits else b""
    return data.replace(b"\xff", b"\xff\x00")
