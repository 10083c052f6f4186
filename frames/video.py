"""av.VideoFrame <-> pixels, for transports that carry video (WebRTC)."""

from __future__ import annotations

import fractions

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from frames.frame import Pixels

VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
"""RTP's video clock: pts of outgoing frames count in 1/90000 s."""


class VideoFrameScaler:
    """The WebRTC decode hop: decoded video frames to RGB pixels at the model's size.

    One libswscale call converts and scales (then a centred crop to the model's
    aspect ratio, `fit`'s framing): 0.5 ms of CPU for a 512x512 camera frame to
    256x256, where converting at full size and resizing with Pillow took 3.2 ms
    (docs/benchmarks.md, server overhead). The swscale context is kept from
    frame to frame (building one costs more than a conversion), so a scaler
    serves one stream, whose frames it converts one at a time, and runs
    single-threaded: sessions already spread over the codec threads.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> Pixels:
        # Scaled to cover the model's size, keeping the aspect ratio, then cropped.
        scale = max(self.width / frame.width, self.height / frame.height)
        width = max(self.width, round(frame.width * scale))
        height = max(self.height, round(frame.height * scale))
        scaled = self._reformatter.reformat(
            frame, width, height, "rgb24", interpolation=Interpolation.BILINEAR, threads=1
        )
        pixels = scaled.to_ndarray().astype(np.uint8, copy=False)  # already uint8
        if (width, height) == (self.width, self.height):
            return pixels
        left, top = (width - self.width) // 2, (height - self.height) // 2
        return np.ascontiguousarray(pixels[top : top + self.height, left : left + self.width])


def video_frame_to_pixels(frame: av.VideoFrame) -> Pixels:
    """A decoded video frame's RGB pixels, at its own size."""
    return frame.to_ndarray(format="rgb24").astype(np.uint8, copy=False)  # already uint8


def pixels_to_video_frame(pixels: Pixels, pts: int) -> av.VideoFrame:
    """RGB pixels to a video frame stamped `pts` in VIDEO_TIME_BASE."""
    return _stamped(av.VideoFrame.from_ndarray(pixels, format="rgb24"), pts)


class Yuv420Converter:
    """RGB pixels to the yuv420p planes (one H*3/2 x W array) that video encoders take.

    aiortc's VP8 and H.264 encoders convert any other frame with a swscale context
    made for the frame, and threads of its own: 1.6 ms of CPU for 256x256, where
    this kept, single-threaded context takes 0.4 ms, once per output however many
    tracks show it. One converter per stream, converting one output at a time.
    """

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def __call__(self, pixels: Pixels) -> Pixels:
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        planes = self._reformatter.reformat(frame, format="yuv420p", threads=1).to_ndarray()
        return planes.astype(np.uint8, copy=False)  # already uint8


def yuv420p_to_video_frame(planes: Pixels, pts: int) -> av.VideoFrame:
    """Yuv420Converter's planes to a video frame stamped `pts` in VIDEO_TIME_BASE."""
    return _stamped(av.VideoFrame.from_ndarray(planes, format="yuv420p"), pts)


def _stamped(frame: av.VideoFrame, pts: int) -> av.VideoFrame:
    frame.pts = pts
    frame.time_base = VIDEO_TIME_BASE
    return frame
