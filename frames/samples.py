"""Sample images for the tests and the benchmarks: deterministic (seeded) pixels of a
known character, so that what a codec or a similarity check does to them is known."""

from __future__ import annotations

import numpy as np

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
