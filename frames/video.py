"""av.VideoFrame <-> pixels, for transports that carry video (WebRTC)."""

from __future__ import annotations

import fractions

import av
import numpy as np

from frames.frame import Pixels
from frames.geometry import fit

VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
"""RTP's video clock: pts of outgoing frames count in 1/90000 s."""


def video_frame_to_pixels(frame: av.VideoFrame, width: int, height: int) -> Pixels:
    """The WebRTC decode hop: a decoded video frame to RGB pixels at the model's size."""
    pixels = frame.to_ndarray(format="rgb24").astype(np.uint8, copy=False)  # already uint8
    return fit(pixels, width, height)


def pixels_to_video_frame(pixels: Pixels, pts: int) -> av.VideoFrame:
    """RGB pixels to a video frame stamped `pts` in VIDEO_TIME_BASE."""
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
    frame.pts = pts
    frame.time_base = VIDEO_TIME_BASE
    return frame
