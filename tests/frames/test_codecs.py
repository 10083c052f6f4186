import numpy as np
import pytest

from frames.codecs import (
    IMAGE_FORMATS,
    MAX_IMAGE_SIZE,
    BadImage,
    ImageFormat,
    decode_image,
    decode_to_size,
    encode_image,
    sniff_format,
)
from frames.samples import gradient_image, noise_image


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
