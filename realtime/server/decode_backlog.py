"""A WebRTC camera's backlog of encoded frames waiting for aiortc's decoder, bounded.

aiortc's RTCRtpReceiver hands each reassembled video frame to a decoder thread
through an unbounded queue. When decoding is slower than the camera (a CPU
shared by many sessions), every frame waits its turn and the latency grows
without bound: 3.4 s after 10 s with 8 sessions of 30 fps on the 2-core machine
(docs/benchmarks.md, server overhead). A video frame is coded against the ones
before it, so the backlog cannot simply keep the newest: once more than
MAX_WAITING frames wait, `DecodeBacklog` drops them and every frame after them
up to the next keyframe, and asks the sender for a keyframe (a PLI, which the
receiver sends when its decode-error flag is set). Each dropped frame is
counted as the session's.

It replaces the receiver's queue through a private attribute (aiortc 1.16,
tests/realtime/test_decode_backlog.py checks that it still takes effect).
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver

MAX_WAITING = 3
"""Encoded frames that may wait for the decoder: 100 ms of a 30 fps camera."""
KEYFRAME_ASKED_EVERY = 30
"""While waiting for a keyframe, ask again after this many frames (a PLI can be lost)."""

_RECEIVERS = "_RTCRtpReceiver__"
"""The prefix of RTCRtpReceiver's private (name-mangled) attributes."""
_H264_NAL_TYPE = re.compile(rb"\x00\x00\x00\x01(.)", re.DOTALL)
"""aiortc's H.264 depayloader writes each NAL unit after a 4-byte start code."""
_H264_IDR, _H264_SPS = 5, 7


def is_keyframe(codec_name: str, data: bytes) -> bool:
    """Whether an encoded frame (as aiortc's depayloaders reassemble it) decodes alone."""
    if codec_name == "VP8":
        return bool(data) and not data[0] & 1  # the frame tag's inverse key-frame bit
    if codec_name == "H264":
        return any(
            match[1][0] & 0x1F in (_H264_IDR, _H264_SPS) for match in _H264_NAL_TYPE.finditer(data)
        )
    return True  # a codec not negotiated here: never held back


class DecodeBacklog(queue.Queue[Any]):
    """The decoder thread's input queue, holding at most MAX_WAITING frames.

    `put` runs on the event loop (the receiver's packet handler), `get` on the decoder
    thread; `on_dropped(n)` is called on the loop for the frames dropped."""

    def __init__(self, decode_error: threading.Event, on_dropped: Callable[[int], None]) -> None:
        super().__init__()
        self._ask_for_keyframe = decode_error
        self._on_dropped = on_dropped
        self._dropping = 0
        """Frames dropped since the backlog overflowed, until a keyframe comes; 0: none."""

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the end of the stream
            super().put(item, block, timeout)
            return
        codec, frame = item
        if is_keyframe(codec.name, frame.data):
            if self.qsize() >= MAX_WAITING:  # what waits is older than a frame decoding alone
                self._on_dropped(self._clear())
            self._dropping = 0
        elif self._dropping:
            self._drop(1)
            return
        elif self.qsize() >= MAX_WAITING:  # overflowing: what waits is too old to show
            self._drop(self._clear() + 1)
            return
        super().put(item, block, timeout)

    def _drop(self, count: int) -> None:
        if self._dropping % KEYFRAME_ASKED_EVERY == 0:
            self._ask_for_keyframe.set()
        self._dropping += count
        self._on_dropped(count)

    def _clear(self) -> int:
        cleared = 0
        with self.mutex:
            while self.queue and self.queue[-1] is not None:
                self.queue.pop()
                cleared += 1
        return cleared


def bound_decode_backlog(receiver: RTCRtpReceiver, on_dropped: Callable[[int], None]) -> None:
    """Give `receiver` a DecodeBacklog; call before it starts receiving (its decoder
    thread takes the queue when it starts)."""
    error: threading.Event = getattr(receiver, _RECEIVERS + "decoder_error")
    setattr(receiver, _RECEIVERS + "decoder_queue", DecodeBacklog(error, on_dropped))
