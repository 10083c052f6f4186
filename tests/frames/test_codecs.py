import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from frames.codecs import (
    IMAGE_FORMATS,
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIZE,
    MAX_JPEG_SCANS,
    MAX_MARKERS,
    BadImage,
    ImageFormat,
    decode_image,
    decode_to_size,
    encode_image,
    sniff_format,
)
from frames.samples import gradient_image, many_scans_jpeg, noise_image


@pytest.mark.parametrize("image_format", IMAGE_FORMATS)
def test_round_trip(image_format: ImageFormat) -> None:
    image = gradient_image(96, 64)
    data = encode_image(image, image_format, 95)
    assert sniff_format(data) == image_format
    decoded = decode_image(data)
    assert decoded.shape == (64, 96, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - image).mean() < 3


def test_png_is_lossless() -> None:
    image = noise_image(33, 17)
    assert np.array_equal(decode_image(encode_image(image, "png")), image)


def test_decode_to_size_fits_any_frame_to_the_model() -> None:
    for width, height in [(640, 480), (1280, 720), (100, 300), (256, 256)]:
        data = encode_image(gradient_image(width, height), "jpeg")
        assert decode_to_size(data, 256, 256).shape == (256, 256, 3)


def test_large_jpeg_decodes_at_a_reduced_scale_but_never_below_the_minimum() -> None:
    data = encode_image(gradient_image(1024, 768), "jpeg")
    decoded = decode_image(data, min_width=256, min_height=256)
    assert decoded.shape[0] >= 256 and decoded.shape[1] >= 256
    assert decoded.shape[0] < 768  # libjpeg-turbo's DCT scaling did the first resize


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "not a JPEG, PNG or WebP"),
        (b"GIF89a....", "not a JPEG, PNG or WebP"),
        (b"\xff\xd8\xff\xe0 truncated", "corrupt JPEG"),
        (b"\x89PNG\r\n\x1a\n broken", "corrupt PNG"),
        (b"RIFF\x00\x00\x00\x00WEBP broken", "corrupt WEBP"),
    ],
)
def test_undecodable_bytes_raise_bad_image(data: bytes, words: str) -> None:
    with pytest.raises(BadImage, match=words):
        decode_image(data)


def test_truncated_jpeg_raises_bad_image() -> None:
    data = encode_image(gradient_image(), "jpeg")
    with pytest.raises(BadImage):
        decode_image(data[: len(data) // 3])


def test_images_over_the_size_limit_are_refused_before_decoding() -> None:
    huge = encode_image(np.zeros((8, MAX_IMAGE_SIZE + 16, 3), np.uint8), "png")
    with pytest.raises(BadImage, match="exceeds the limit of 4096x4096"):
        decode_image(huge)


@pytest.mark.parametrize("image_format", ["jpeg", "png", "webp"])
def test_the_size_limit_is_configurable_and_applies_to_each_side(
    image_format: ImageFormat,
) -> None:
    wide = encode_image(np.zeros((16, 80, 3), np.uint8), image_format)
    tall = encode_image(np.zeros((80, 16, 3), np.uint8), image_format)
    for data in (wide, tall):
        with pytest.raises(BadImage, match="exceeds the limit of 64x64"):
            decode_image(data, max_size=64)
        assert decode_image(data, max_size=80).shape[:2] in ((16, 80), (80, 16))


@pytest.mark.parametrize("image_format", ["jpeg", "png", "webp"])
def test_the_pixel_budget_applies_to_the_area(image_format: ImageFormat) -> None:
    within_each_side = encode_image(np.zeros((40, 80, 3), np.uint8), image_format)
    with pytest.raises(BadImage, match="80x40 has 3200 pixels, over the limit of 2500"):
        decode_image(within_each_side, max_size=100, max_pixels=50 * 50)
    assert decode_image(within_each_side, max_size=100, max_pixels=80 * 40).shape == (40, 80, 3)


def test_the_default_pixel_budget_is_a_4k_frame() -> None:
    assert decode_image(encode_image(np.zeros((2160, 4096, 3), np.uint8), "png")).shape[0] == 2160
    over = encode_image(np.zeros((2161, 4096, 3), np.uint8), "png")
    with pytest.raises(BadImage, match=f"over the limit of {MAX_IMAGE_PIXELS}"):
        decode_image(over)


def test_a_progressive_jpeg_decodes() -> None:
    buffer = io.BytesIO()
    Image.fromarray(gradient_image(320, 240)).save(buffer, "JPEG", progressive=True)
    assert decode_image(buffer.getvalue()).shape == (240, 320, 3)


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding() -> None:
    # Valid: libjpeg-turbo decodes it (to mid-grey) in time growing with scans x blocks.
    bomb = many_scans_jpeg(64, 64)
    with pytest.raises(BadImage, match=f"JPEG of more than {MAX_JPEG_SCANS} scans"):
        decode_image(bomb)
    assert decode_image(bomb, max_scans=10_000).mean() == 128


def test_the_scan_limit_counts_the_scans() -> None:
    few = many_scans_jpeg(16, 16, refinements=0)  # 1 + 3 * 63 scans
    with pytest.raises(BadImage, match="more than 189 scans"):
        decode_image(few, max_scans=189)
    assert decode_image(few, max_scans=190).shape == (16, 16, 3)


def test_a_jpeg_of_too_many_markers_is_refused() -> None:
    jpeg = encode_image(gradient_image(16, 16), "jpeg")
    comments = b"\xff\xfe\x00\x02" * (MAX_MARKERS + 1)  # empty COM segments
    with pytest.raises(BadImage, match=f"more than {MAX_MARKERS} markers besides its scans"):
        decode_image(jpeg[:2] + comments + jpeg[2:])


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def test_a_png_of_too_many_chunks_is_refused() -> None:
    # Pillow reads metadata chunks one by one in Python: 400,000 of them cost seconds.
    png = encode_image(gradient_image(16, 16), "png")
    header_end = 8 + 25  # signature, IHDR
    timestamps = _chunk(b"tIME", bytes(7)) * MAX_MARKERS
    with pytest.raises(BadImage, match=f"PNG of more than {MAX_MARKERS} chunks besides"):
        decode_image(png[:header_end] + timestamps + png[header_end:])


def test_a_png_of_many_small_pixel_data_chunks_decodes() -> None:
    # Some encoders split the pixel data into many IDAT chunks: Pillow reads them fast.
    image = noise_image(64, 64)
    rows = b"".join(b"\x00" + row.tobytes() for row in image)  # filter type 0 per row
    pixel_data = zlib.compress(rows)
    header = struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)  # 8-bit RGB
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    png += b"".join(_chunk(b"IDAT", pixel_data[i : i + 8]) for i in range(0, len(pixel_data), 8))
    assert len(pixel_data) // 8 > MAX_MARKERS
    assert np.array_equal(decode_image(png + _chunk(b"IEND", b"")), image)
