"""Image codecs: JPEG through libjpeg-turbo (simplejpeg), PNG and WebP through Pillow.

simplejpeg was chosen over Pillow for JPEG after `benchmarks/codecs.py`
(docs/benchmarks.md): it skips Pillow's Image object and can decode at a
reduced DCT scale when the frame is larger than the model needs.
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image

from frames.frame import IMAGE_FORMATS as IMAGE_FORMATS  # re-exported: callers name them here
from frames.frame import ImageFormat as ImageFormat
from frames.frame import Pixels
from frames.geometry import fit

MAX_IMAGE_SIZE = 4096
"""Default widest and tallest image decoded: guards memory against decompression bombs."""


class BadImage(ValueError):
    """The bytes are not a decodable JPEG, PNG or WebP image of an accepted size."""


def sniff_format(data: bytes) -> ImageFormat:
    """Name the format from the magic bytes, or raise BadImage."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise BadImage(f"not a JPEG, PNG or WebP image (starts with {data[:8].hex()!r})")


def decode_image(
    data: bytes, *, min_width: int = 0, min_height: int = 0, max_size: int = MAX_IMAGE_SIZE
) -> Pixels:
    """Decode to RGB pixels. A JPEG may come back smaller than encoded, but never
    below `min_width` x `min_height` (libjpeg-turbo's fast DCT scaling). An image
    wider or taller than `max_size` is refused from its header, before decoding."""
    image_format = sniff_format(data)
    try:
        if image_format == "jpeg":
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            _check_size(width, height, max_size)
            return simplejpeg.decode_jpeg(  # type: ignore[no-any-return]
                data, colorspace="RGB", min_width=min_width, min_height=min_height
            )
        with Image.open(io.BytesIO(data)) as image:
            _check_size(*image.size, max_size)
            return np.asarray(image.convert("RGB"))
    except BadImage:
        raise
    except Exception as error:  # each codec raises its own types for corrupt data
        raise BadImage(f"corrupt {image_format.upper()} image: {error}") from error


def decode_to_size(
    data: bytes, width: int, height: int, *, max_size: int = MAX_IMAGE_SIZE
) -> Pixels:
    """The data path's decode hop: bytes in, pixels at the model's size out."""
    pixels = decode_image(data, min_width=width, min_height=height, max_size=max_size)
    return fit(pixels, width, height)


def encode_image(pixels: Pixels, image_format: ImageFormat = "jpeg", quality: int = 90) -> bytes:
    """Encode RGB pixels; `quality` (1-100) applies to JPEG and WebP."""
    if image_format == "jpeg":
        # 4:2:0 like cameras and Pillow: smaller and faster than simplejpeg's 4:4:4 default.
        return simplejpeg.encode_jpeg(  # type: ignore[no-any-return]
            np.ascontiguousarray(pixels), quality=quality, colorspace="RGB", colorsubsampling="420"
        )
    buffer = io.BytesIO()
    options = {"quality": quality} if image_format == "webp" else {"compress_level": 1}
    Image.fromarray(pixels).save(buffer, format=image_format.upper(), **options)
    return buffer.getvalue()


def _check_size(width: int, height: int, max_size: int) -> None:
    if width > max_size or height > max_size:
        raise BadImage(
            f"image of {width}x{height} exceeds the limit of {max_size}x{max_size} pixels"
        )
