"""Image codecs: JPEG through libjpeg-turbo (simplejpeg), PNG and WebP through Pillow.

simplejpeg was chosen over Pillow for JPEG after `benchmarks/codecs.py`
(docs/benchmarks.md): it skips Pillow's Image object and can decode at a
reduced DCT scale when the frame is larger than the model needs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import re
import struct
from collections.abc import Callable

import numpy as np
import simplejpeg
from PIL import Image

from frames.frame import IMAGE_FORMATS as IMAGE_FORMATS  # re-exported: callers name them here
from frames.frame import ImageFormat as ImageFormat
from frames.frame import Pixels
from frames.geometry import fit

MAX_IMAGE_SIZE = 4096
"""Default widest and tallest image decoded: guards memory against decompression bombs."""
MAX_IMAGE_PIXELS = 4096 * 2160
"""Default most pixels (width x height) decoded: a 4K frame. Decoding time and memory
grow with the pixels, so both are bounded before decoding."""
MAX_JPEG_SCANS = 64
"""Most scans in a JPEG. A progressive JPEG has about 10, but libjpeg-turbo passes over
every block of the image once per scan: a small file with thousands of tiny scans costs
seconds of CPU (a scan bomb)."""
RELEASE_AFTER_BYTES = 2**23
"""A decode to pixels this large (8 MiB: 2.8 MP, above 1080p) hands the memory it
freed back to the system: glibc's malloc keeps the freed buffers of a large image
in its per-thread arenas, so that a burst of 4K frames left the server 550 MB
larger for good. It costs a decode about a fifth more CPU (the pages are faulted
in again), hence only for large images (docs/benchmarks.md, decode cost)."""
MAX_MARKERS = 1024
"""Most JPEG markers (besides scans) or PNG chunks (besides pixel data): encoders
write tens. Bounds the walk that counts scans, and Pillow's reading of PNG
metadata, chunk by chunk in Python."""


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
    data: bytes,
    *,
    min_width: int = 0,
    min_height: int = 0,
    max_size: int = MAX_IMAGE_SIZE,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_scans: int = MAX_JPEG_SCANS,
) -> Pixels:
    """Decode to RGB pixels. A JPEG may come back smaller than encoded, but never
    below `min_width` x `min_height` (libjpeg-turbo's fast DCT scaling).

    What decoding would cost is bounded first, from the headers: an image wider or
    taller than `max_size`, of more than `max_pixels` pixels, a JPEG of more than
    `max_scans` scans, or a file of more than MAX_MARKERS markers or chunks is refused."""
    image_format = sniff_format(data)
    try:
        if image_format == "jpeg":
            check_jpeg(data, max_size=max_size, max_pixels=max_pixels, max_scans=max_scans)
            return simplejpeg.decode_jpeg(  # type: ignore[no-any-return]
                data, colorspace="RGB", min_width=min_width, min_height=min_height
            )
        if image_format == "png":
            _check_png_chunks(data)
        with Image.open(io.BytesIO(data)) as image:
            _check_size(*image.size, max_size, max_pixels)
            return np.asarray(image.convert("RGB"))
    except BadImage:
        raise
    except Exception as error:  # each codec raises its own types for corrupt data
        raise BadImage(f"corrupt {image_format.upper()} image: {error}") from error


def check_jpeg(
    data: bytes,
    *,
    max_size: int = MAX_IMAGE_SIZE,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_scans: int = MAX_JPEG_SCANS,
) -> tuple[int, int]:
    """Return a JPEG's width and height from its headers, or raise BadImage where
    decoding it would cost more than the limits allow (see `decode_image`). Any
    JPEG decoder's bound: frames/device_codec.py checks with it before nvjpeg."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except Exception as error:  # simplejpeg's ValueError for a corrupt header
        raise BadImage(f"corrupt JPEG image: {error}") from error
    _check_size(width, height, max_size, max_pixels)
    _check_jpeg_scans(data, max_scans)
    return width, height


def decode_to_size(
    data: bytes,
    width: int,
    height: int,
    *,
    max_size: int = MAX_IMAGE_SIZE,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Pixels:
    """The data path's decode hop: bytes in, pixels at the model's size out."""
    pixels = decode_image(
        data, min_width=width, min_height=height, max_size=max_size, max_pixels=max_pixels
    )
    fitted = fit(pixels, width, height)
    if pixels.nbytes >= RELEASE_AFTER_BYTES:
        del pixels
        _release_freed_memory()
    return fitted


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


def _check_size(width: int, height: int, max_size: int, max_pixels: int) -> None:
    if width > max_size or height > max_size:
        raise BadImage(
            f"image of {width}x{height} exceeds the limit of {max_size}x{max_size} pixels"
        )
    if width * height > max_pixels:
        raise BadImage(
            f"image of {width}x{height} has {width * height} pixels, over the limit of {max_pixels}"
        )


# A marker: 0xFF then a byte that is neither a stuffed zero, a restart marker inside
# entropy-coded data, nor another 0xFF (fill), as libjpeg-turbo reads them.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOS, _EOI, _TEM = 0xDA, 0xD9, 0x01


def _check_jpeg_scans(data: bytes, max_scans: int) -> None:
    """Walk the markers, skipping each segment by its length and each scan's data to
    the next marker, and refuse more than `max_scans` scans."""
    scans = markers = 0
    position = 2  # after SOI
    while (found := _JPEG_MARKER.search(data, position)) is not None:
        marker = data[found.start() + 1]
        if marker == _EOI:
            return
        if marker == _SOS:
            scans += 1
            if scans > max_scans:
                raise BadImage(f"JPEG of more than {max_scans} scans: too costly to decode")
        else:
            markers += 1
            if markers > MAX_MARKERS:
                raise BadImage(f"JPEG of more than {MAX_MARKERS} markers besides its scans")
        length = int.from_bytes(data[found.end() : found.end() + 2]) if marker != _TEM else 0
        position = found.end() + length


def _check_png_chunks(data: bytes) -> None:
    """Refuse more than MAX_MARKERS chunks besides the pixel data (IDAT), which Pillow
    reads one by one in Python; IDAT chunks it reads fast, and encoders write many."""
    position, chunks = 8, 0  # after the signature
    while position + 8 <= len(data):  # a truncated PNG: Pillow says how
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"IEND":
            return
        chunks += kind != b"IDAT"
        if chunks > MAX_MARKERS:
            raise BadImage(f"PNG of more than {MAX_MARKERS} chunks besides its pixel data")
        position += 12 + length  # length, type, data, CRC


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (macOS, musl)."""
    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None


_MALLOC_TRIM = _malloc_trim()


def _release_freed_memory() -> None:
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)  # every arena's free pages back to the system: ~10 us when none
