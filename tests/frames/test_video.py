"""Video frames to the model's pixels and back, in one libswscale call each way."""

from __future__ import annotations

import av
import numpy as np
import pytest

from frames.geometry import fit
from frames.samples import gradient_image
from frames.video import (
    VideoFrameScaler,
    Yuv420Converter,
    video_frame_to_pixels,
    yuv420p_to_video_frame,
)


def camera_frame(width: int, height: int) -> av.VideoFrame:
    """What aiortc's decoders give: yuv420p."""
    pixels = gradient_image(width, height, seed=3)
    return av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")


SIZES = [((640, 480), (256, 256)), ((512, 512), (256, 256)), ((480, 640), (512, 256))]


@pytest.mark.parametrize(("size", "model"), [*SIZES, ((256, 256), (256, 256))])
def test_the_scaler_frames_like_fit(size: tuple[int, int], model: tuple[int, int]) -> None:
    """Centre-cropped to the model's aspect ratio and resized, as `fit` frames an image:
    the same picture within a few levels (the two resize filters differ)."""
    frame = camera_frame(*size)
    scaler = VideoFrameScaler(*model)
    expected = fit(video_frame_to_pixels(frame), *model).astype(int)
    for _ in range(2):  # the second frame reuses the first's swscale context
        pixels = scaler(frame)
        assert pixels.shape == (model[1], model[0], 3)
        assert pixels.dtype == np.uint8 and pixels.flags.c_contiguous
        assert np.abs(pixels.astype(int) - expected).mean() < 2


def test_yuv420p_planes_make_a_frame_of_the_same_picture() -> None:
    pixels = gradient_image(64, 48)
    planes = Yuv420Converter()(pixels)
    assert planes.shape == (48 * 3 // 2, 64)
    frame = yuv420p_to_video_frame(planes, pts=3000)
    assert (frame.format.name, frame.width, frame.height, frame.pts) == ("yuv420p", 64, 48, 3000)
    back = frame.to_ndarray(format="rgb24").astype(int)
    assert np.abs(back - pixels.astype(int)).mean() < 3
