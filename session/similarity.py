"""The similarity filter: skip an input frame nearly identical to the last one the model ran.

A still camera makes a stream of almost equal frames, and with a fixed seed the
model makes almost equal outputs from them: running it again only costs GPU time
(and power). As StreamDiffusion's Stochastic Similarity Filter does, compare
each frame with the last one that went into the model (cosine similarity of the
centred pixels) and skip it above a threshold. Unlike StreamDiffusion's, the
decision is not random, so a test can predict it; and a change of params, or
MAX_SKIPPED_IN_A_ROW skips, always lets a frame through, so that a prompt typed
over a still scene shows, and slow drift (light, exposure) is caught up with.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from frames.frame import Pixels
from models.params import ParamValue

MAX_SKIPPED_IN_A_ROW = 10
_STRIDE = 4
"""Every 4th pixel each way: 1/16 of the work, and the same answer for camera frames."""


def similarity(one: Pixels, other: Pixels) -> float:
    """Cosine similarity of two images of one size, their pixels centred on mid-grey:
    1 for equal images, lower as they differ (-1 for an image and its negative)."""
    a, b = one[::_STRIDE, ::_STRIDE], other[::_STRIDE, ::_STRIDE]
    if np.array_equal(a, b):
        return 1.0  # exactly, so that a threshold of 1 skips exact repeats
    centred_a = a.astype(np.float64).ravel() - 127.5
    centred_b = b.astype(np.float64).ravel() - 127.5
    norms = float(np.linalg.norm(centred_a) * np.linalg.norm(centred_b))
    return float(np.dot(centred_a, centred_b)) / norms if norms else 0.0


class SimilarityFilter:
    """Per session: `skips(pixels, params)` decides for the frame about to enter the model."""

    def __init__(self) -> None:
        self._last_pixels: Pixels | None = None
        self._last_params: dict[str, ParamValue] | None = None
        self._in_a_row = 0

    def skips(self, pixels: Pixels, params: Mapping[str, ParamValue], threshold: float) -> bool:
        """True: skip this frame. False: it goes into the model and becomes the reference.
        A threshold of 0 (or less) turns the filter off, and so do pixels that are not a
        host array (a GPU codec's, frames/device_codec.py): it compares on the CPU."""
        similar = (
            threshold > 0
            and isinstance(pixels, np.ndarray)
            and self._last_pixels is not None
            and self._last_params == params
            and self._in_a_row < MAX_SKIPPED_IN_A_ROW
            and self._last_pixels.shape == pixels.shape
            and similarity(pixels, self._last_pixels) >= threshold
        )
        if similar:
            self._in_a_row += 1
            return True
        self._last_pixels, self._last_params, self._in_a_row = pixels, dict(params), 0
        return False
