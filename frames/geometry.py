"""Fitting frames to a model's size: centre crop to the aspect ratio, then resize."""

from __future__ import annotations

import numpy as np
from PIL import Image

from frames.frame import Pixels


def fit(pixels: Pixels, width: int, height: int) -> Pixels:
    """Return `pixels` at exactly `width` x `height`.

    The largest centred region with the target aspect ratio is kept (what a
    camera app's "fill" mode shows) and resized with bilinear filtering, so a
    16:9 webcam frame loses its left and right edges rather than being squashed.
    """
    src_height, src_width = pixels.shape[:2]
    if (src_width, src_height) == (width, height):
        return pixels
    left, top, crop_width, crop_height = centre_crop(src_width, src_height, width, height)
    image = Image.fromarray(pixels[top : top + crop_height, left : left + crop_width])
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image)


def centre_crop(
    src_width: int, src_height: int, width: int, height: int
) -> tuple[int, int, int, int]:
    """The largest centred region of a `src_width` x `src_height` image with the
    aspect ratio of `width` x `height`: (left, top, crop width, crop height)."""
    target_aspect = width / height
    if src_width / src_height > target_aspect:
        crop_width, crop_height = round(src_height * target_aspect), src_height
    else:
        crop_width, crop_height = src_width, round(src_width / target_aspect)
    return (src_width - crop_width) // 2, (src_height - crop_height) // 2, crop_width, crop_height
