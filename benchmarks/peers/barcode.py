"""The camera: a moving picture with each frame's index painted in as a barcode, and
the reading of that index from a frame that came back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack

from frames.frame import Pixels

SIZE = 512
BLOCK = 32
BITS = SIZE // BLOCK  # 16 bits: indexes up to 65535
TIME_BASE = Fraction(1, 90_000)


def texture() -> Callable[[int], Pixels]:
    """A moving picture under the barcode: every frame differs, as a camera's do."""
    y, x = np.mgrid[0:SIZE, 0 : 2 * SIZE].astype(np.float32)
    wide = np.stack(
        [
            128 + 100 * np.sin(x / 23) * np.cos(y / 31),
            128 + 100 * np.sin((x + y) / 41),
            128 + 100 * np.cos(x / 17 - y / 29),
        ],
        axis=-1,
    ).astype(np.uint8)

    def picture(index: int) -> Pixels:
        shift = (index * 3) % SIZE
        return np.ascontiguousarray(wide[:, shift : shift + SIZE])

    return picture


def paint_index(pixels: Pixels, index: int) -> None:
    """Row 0: the index's 16 bits, most significant first; row 1: their complement."""
    for bit in range(BITS):
        on = (index >> (BITS - 1 - bit)) & 1
        x = bit * BLOCK
        pixels[0:BLOCK, x : x + BLOCK] = 255 if on else 0
        pixels[BLOCK : 2 * BLOCK, x : x + BLOCK] = 0 if on else 255


def read_index(frame: av.VideoFrame, inverted: bool) -> int | None:
    """The index painted into `frame` (of any size), or None if the two rows disagree."""
    gray = frame.to_ndarray(format="gray")
    height, width = gray.shape
    block_w, block_h = width / BITS, height / BITS
    rows = []
    for row in range(2):
        center_y = (row + 0.5) * block_h
        y0, y1 = int(center_y - block_h / 4), int(center_y + block_h / 4) + 1
        bits = []
        for bit in range(BITS):
            center_x = (bit + 0.5) * block_w
            x0, x1 = int(center_x - block_w / 4), int(center_x + block_w / 4) + 1
            bright = gray[y0:y1, x0:x1].mean() > 127
            bits.append(int(bright != inverted))
        rows.append(bits)
    if any(a == b for a, b in zip(rows[0], rows[1], strict=True)):
        return None
    return int("".join(map(str, rows[0])), 2)


class BarcodeCamera(MediaStreamTrack):
    """Films `total` frames at `fps`, numbered 1..total in the barcode, then frames numbered 0.

    The fillers after the last frame push it through: aiortc's jitter buffer hands
    a frame on only when a packet of the next one arrives."""

    kind = "video"

    def __init__(self, fps: float, total: int, on_frame: Callable[[int], None]) -> None:
        super().__init__()
        self.fps = fps
        self.total = total
        self.sent_at: dict[int, float] = {}
        self._on_frame = on_frame
        self._picture = texture()
        self.frames = 0
        self._started_at: float | None = None

    async def recv(self) -> av.VideoFrame:
        self.frames += 1
        index = self.frames if self.frames <= self.total else 0
        now = time.perf_counter()
        if self._started_at is None:
            self._started_at = now
        due = self._started_at + (self.frames - 1) / self.fps
        if due > now:
            await asyncio.sleep(due - now)
        pixels = self._picture(index)
        paint_index(pixels, index)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        sent = time.perf_counter()
        frame.pts = round((sent - self._started_at) / TIME_BASE)
        frame.time_base = TIME_BASE
        if index:
            self.sent_at[index] = sent
            self._on_frame(index)
        return frame
