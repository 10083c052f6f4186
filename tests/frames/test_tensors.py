from __future__ import annotations

import numpy as np
import pytest
import torch

from frames.tensors import pixels_to_tensor, tensor_to_device_pixels, tensor_to_pixels


def test_round_trip_keeps_every_level() -> None:
    levels = np.arange(256, dtype=np.uint8)
    pixels = np.stack([levels, levels[::-1], levels], axis=-1).reshape(16, 16, 3)
    tensor = pixels_to_tensor(pixels, "cpu", torch.float32)
    assert tensor.shape == (1, 3, 16, 16)
    assert tensor.dtype == torch.float32
    assert tensor.min().item() == -1.0
    assert tensor.max().item() == 1.0
    np.testing.assert_array_equal(tensor_to_pixels(tensor), pixels)


def test_pixels_to_tensor_is_nchw_rgb() -> None:
    pixels = np.zeros((2, 4, 3), dtype=np.uint8)
    pixels[1, 3] = (255, 0, 255)
    tensor = pixels_to_tensor(pixels, "cpu", torch.float32)
    assert tensor[0, :, 1, 3].tolist() == [1.0, -1.0, 1.0]
    assert tensor[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0]


def test_read_only_pixels_are_accepted() -> None:
    pixels = np.frombuffer(bytes(range(12)), dtype=np.uint8).reshape(2, 2, 3)
    assert not pixels.flags.writeable
    np.testing.assert_array_equal(
        tensor_to_pixels(pixels_to_tensor(pixels, "cpu", torch.float32)), pixels
    )


def test_tensor_to_pixels_clips_and_rounds() -> None:
    tensor = torch.tensor([-1.5, 1.5, 0.0]).reshape(3, 1, 1)
    assert tensor_to_pixels(tensor).tolist() == [[[0, 255, 128]]]


def test_half_precision_converts() -> None:
    pixels = np.full((8, 8, 3), 200, dtype=np.uint8)
    tensor = pixels_to_tensor(pixels, "cpu", torch.float16)
    assert tensor.dtype == torch.float16
    assert np.abs(tensor_to_pixels(tensor).astype(int) - 200).max() <= 1


@pytest.mark.parametrize(
    "pixels",
    [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32)],
)
def test_pixels_to_tensor_rejects_other_arrays(pixels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        pixels_to_tensor(pixels, "cpu", torch.float32)


def test_tensor_to_pixels_rejects_a_batch() -> None:
    with pytest.raises(ValueError, match="batch of 2"):
        tensor_to_pixels(torch.zeros(2, 3, 4, 4))


def test_a_strided_view_converts_like_a_contiguous_copy() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    view = pixels[::2, ::-2]
    from_view = pixels_to_tensor(view, "cpu", torch.float32)
    from_copy = pixels_to_tensor(np.ascontiguousarray(view), "cpu", torch.float32)
    assert torch.equal(from_view, from_copy)
    # The layout matters too: it picks the conv kernels, and so the last bits.
    assert from_view.stride() == from_copy.stride()


def test_a_tensor_of_pixels_converts_as_the_array_does() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    from_array = pixels_to_tensor(pixels, "cpu", torch.float32)
    from_tensor = pixels_to_tensor(torch.from_numpy(pixels), "cpu", torch.float32)
    assert torch.equal(from_tensor, from_array)
    # The same channels-last layout (the batch stride of a batch of one does not count).
    assert from_tensor.stride()[1:] == from_array.stride()[1:]
    # A strided view (a crop) too.
    crop = pixels[4:20, 8:32]
    assert torch.equal(
        pixels_to_tensor(torch.from_numpy(pixels)[4:20, 8:32], "cpu", torch.float32),
        pixels_to_tensor(crop, "cpu", torch.float32),
    )


def test_tensor_to_device_pixels_is_tensor_to_pixels_left_on_the_device() -> None:
    tensor = torch.linspace(-1.2, 1.2, 3 * 5 * 7).reshape(1, 3, 5, 7)
    on_device = tensor_to_device_pixels(tensor)
    assert on_device.dtype == torch.uint8 and on_device.shape == (5, 7, 3)
    np.testing.assert_array_equal(on_device.numpy(), tensor_to_pixels(tensor))


def test_a_tensor_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="uint8 array or tensor"):
        pixels_to_tensor(torch.zeros(4, 4, 3), "cpu", torch.float32)
    with pytest.raises(ValueError, match="uint8 array or tensor"):
        pixels_to_tensor(torch.zeros(3, 4, 4, dtype=torch.uint8), "cpu", torch.float32)
