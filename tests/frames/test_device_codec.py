"""The codec per model device (frames/device_codec.py). On this CPU-only machine
CUDA falls back to frames/codecs.py, and the nvjpeg codec's checks and non-JPEG
paths, which run before or without torchvision, are exercised on the CPU."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from frames.codecs import IMAGE_FORMATS, BadImage, ImageFormat, decode_to_size, encode_image
from frames.device_codec import CpuCodec, NvjpegCodec, codec_for, fit_on_device
from frames.geometry import fit
from frames.samples import gradient_image, many_scans_jpeg, noise_image

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="about a machine without CUDA")


@pytest.fixture
def fresh_codecs() -> None:
    codec_for.cache_clear()  # each device's choice is logged once per process


@no_cuda
@pytest.mark.usefixtures("fresh_codecs")
def test_cuda_without_nvjpeg_falls_back_to_the_cpu_codec_in_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="frames.device_codec"):
        codecs = [codec_for("cuda:0") for _ in range(3)]
    assert all(isinstance(codec, CpuCodec) and not codec.on_device for codec in codecs)
    assert [record.getMessage() for record in caplog.records] == [
        "JPEG on the CPU for a model on cuda:0: CUDA is not available to torch"
    ]


@pytest.mark.usefixtures("fresh_codecs")
@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_cpu_and_mps_use_the_cpu_codec_silently(
    device: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="frames.device_codec"):
        assert isinstance(codec_for(device), CpuCodec)
    assert not caplog.records


@no_cuda
@pytest.mark.parametrize("image_format", IMAGE_FORMATS)
def test_the_fallback_gives_the_pixels_and_bytes_of_frames_codecs(
    image_format: ImageFormat,
) -> None:
    codec = codec_for("cuda:0")
    assert isinstance(codec, CpuCodec)
    data = encode_image(gradient_image(320, 180), image_format, 90)
    decoded = codec.decode(data, 128, 96)
    assert isinstance(decoded, np.ndarray)
    np.testing.assert_array_equal(decoded, decode_to_size(data, 128, 96))
    assert codec.encode(decoded, image_format, 80) == encode_image(decoded, image_format, 80)
    # A model's device tensor (here on the CPU) is copied to the host to be encoded.
    as_tensor = torch.from_numpy(decoded.copy())
    assert codec.encode(as_tensor, image_format, 80) == encode_image(decoded, image_format, 80)


def _refusals() -> list[tuple[bytes, dict[str, int], str]]:
    jpeg = encode_image(gradient_image(64, 48), "jpeg")
    return [
        (jpeg, {"max_size": 63}, "exceeds the limit of 63x63 pixels"),
        (jpeg, {"max_pixels": 64 * 48 - 1}, "over the limit of 3071"),
        (many_scans_jpeg(64, 64), {}, "JPEG of more than 64 scans"),
        (b"\xff\xd8\xff" + bytes(40), {}, "corrupt JPEG image"),
        (b"GIF89a" + bytes(20), {}, "not a JPEG, PNG or WebP image"),
    ]


@pytest.mark.parametrize(("data", "limits", "words"), _refusals())
@pytest.mark.parametrize("codec", [CpuCodec(), NvjpegCodec("cpu")], ids=["cpu", "nvjpeg"])
def test_limits_refuse_the_same_images_with_the_same_errors_on_both_codecs(
    codec: CpuCodec | NvjpegCodec, data: bytes, limits: dict[str, int], words: str
) -> None:
    # The nvjpeg codec refuses from the headers, before torchvision (absent here) is imported.
    with pytest.raises(BadImage, match=words) as raised:
        codec.decode(data, 32, 32, **limits)
    with pytest.raises(BadImage) as expected:
        decode_to_size(data, 32, 32, **limits)
    assert str(raised.value) == str(expected.value)


@pytest.mark.parametrize("image_format", ["png", "webp"])
def test_the_nvjpeg_codec_takes_png_and_webp_through_the_cpu_codec(
    image_format: ImageFormat,
) -> None:
    codec = NvjpegCodec("cpu")
    data = encode_image(noise_image(100, 70), image_format, 90)
    decoded = codec.decode(data, 64, 64)
    assert isinstance(decoded, np.ndarray)
    np.testing.assert_array_equal(decoded, decode_to_size(data, 64, 64))
    as_tensor = torch.from_numpy(decoded.copy())
    assert codec.encode(as_tensor, image_format, 75) == encode_image(decoded, image_format, 75)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ((640, 480), (256, 256)),
        ((1280, 720), (512, 512)),
        ((300, 500), (128, 96)),
        ((90, 60), (300, 200)),
    ],
)
def test_fit_on_device_crops_like_fit_and_resizes_within_a_level_or_two(
    source: tuple[int, int], target: tuple[int, int]
) -> None:
    pixels = gradient_image(*source)
    expected = fit(pixels, *target)
    fitted = fit_on_device(torch.from_numpy(pixels.copy()), *target)
    assert fitted.dtype == torch.uint8 and fitted.is_contiguous()
    assert fitted.shape == expected.shape
    difference = np.abs(fitted.numpy().astype(int) - expected)
    assert difference.max() <= 2 and difference.mean() < 0.5


def test_fit_on_device_keeps_a_frame_of_the_model_size_and_only_crops_when_it_can() -> None:
    pixels = torch.from_numpy(noise_image(64, 48).copy())
    assert fit_on_device(pixels, 64, 48) is pixels
    wide = torch.from_numpy(noise_image(96, 48).copy())
    np.testing.assert_array_equal(fit_on_device(wide, 48, 48).numpy(), wide[:, 24:72].numpy())
