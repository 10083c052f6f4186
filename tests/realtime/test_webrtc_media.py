"""The WebRTC media path's two bounded hand-offs, with aiortc's own track class."""

from __future__ import annotations

import asyncio

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpreceiver import RemoteStreamTrack

from frames.video import VIDEO_TIME_BASE, Yuv420Converter, pixels_to_video_frame
from realtime.server.webrtc import LatestOutput, OutputTrack, newest_frame


def solid(value: int) -> np.ndarray:
    return np.full((16, 16, 3), value, np.uint8)


def grey(frame: av.VideoFrame) -> int:
    """A solid output's level, back from the yuv420p that tracks carry (within a level
    or two: the conversion rounds)."""
    return round(int(frame.to_ndarray(format="rgb24")[0, 0, 0]), -1)


@pytest.mark.asyncio
async def test_newest_frame_empties_aiortcs_receive_queue() -> None:
    track = RemoteStreamTrack(kind="video")
    for index in range(5):  # what aiortc's decoder thread queued while we were busy
        await track._queue.put(pixels_to_video_frame(solid(index), index))
    frame, skipped = await newest_frame(track)
    assert (frame.pts, skipped) == (4, 4)
    assert track._queue.empty()


@pytest.mark.asyncio
async def test_newest_frame_leaves_the_end_of_stream_for_the_next_read() -> None:
    track = RemoteStreamTrack(kind="video")
    await track._queue.put(pixels_to_video_frame(solid(1), 1))
    await track._queue.put(None)
    frame, skipped = await newest_frame(track)
    assert (frame.pts, skipped) == (1, 0)
    with pytest.raises(MediaStreamError):
        await newest_frame(track)


@pytest.mark.asyncio
async def test_output_tracks_show_the_newest_output_and_count_what_they_skip() -> None:
    outputs = LatestOutput()
    fast, slow = OutputTrack(outputs), OutputTrack(outputs)
    to_yuv420p = Yuv420Converter()
    await outputs.publish(to_yuv420p(solid(10)))
    first = await fast.recv()
    assert grey(first) == 10
    assert first.time_base == VIDEO_TIME_BASE
    for value in (20, 30, 40):
        await outputs.publish(to_yuv420p(solid(value)))
    newest = await fast.recv()
    assert grey(newest) == 40
    assert newest.pts is not None and first.pts is not None
    assert newest.pts >= first.pts
    assert (fast.shown, fast.skipped) == (2, 2)
    assert grey(await slow.recv()) == 40  # a late viewer

    waiting = asyncio.create_task(fast.recv())  # nothing newer yet: it waits
    await asyncio.sleep(0.01)
    assert not waiting.done()
    repeat = await asyncio.wait_for(waiting, 5)  # ... then shows the last one again
    assert grey(repeat) == 40
    assert (fast.shown, fast.skipped, fast.repeated) == (2, 2, 1)
    waiting = asyncio.create_task(fast.recv())
    await outputs.close()
    with pytest.raises(MediaStreamError):
        await waiting
