"""Conversions between uint8 pixels and the [-1, 1] NCHW tensors diffusion models take.

Both directions do their arithmetic on the tensor's device: only uint8 bytes
cross between host and accelerator, a quarter of what float32 would move, and
none where the pixels are already there (`DevicePixels`, frames/device_codec.py).
"""

from __future__ import annotations

import numpy as np
import torch

from frames.frame import DevicePixels, Pixels


def pixels_to_tensor(
    pixels: Pixels | DevicePixels, device: str | torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Return `pixels` (H x W x 3 uint8, an array or a tensor) as a 1 x 3 x H x W
    tensor in [-1, 1] on `device`."""
    if isinstance(pixels, torch.Tensor):
        uint8 = pixels.dtype == torch.uint8
    else:
        uint8 = pixels.dtype == np.uint8
    if not uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(
            "pixels must be an H x W x 3 uint8 array or tensor,"
            f" got shape {tuple(pixels.shape)} dtype {pixels.dtype}"
        )
    if isinstance(pixels, torch.Tensor):
        # Contiguous HWC, as from numpy below, so that the permuted batch has the same layout.
        nhwc = pixels.to(device, non_blocking=True).contiguous()[None]
    else:
        # Copied only when needed: torch.from_numpy warns on read-only arrays (np.frombuffer,
        # np.asarray of a PIL image), and a strided view would change the layout below.
        array = np.require(pixels, requirements=("C", "W"))
        nhwc = torch.from_numpy(array[np.newaxis]).to(device, non_blocking=True)
    # x / 255 * 2 - 1 in the channels-last layout of a permuted NHWC array, exactly
    # as diffusers' VaeImageProcessor makes it: a one-ulp difference, or the other
    # conv kernels another layout selects, grows through the UNet into a visible one.
    return nhwc.permute(0, 3, 1, 2).to(dtype).div_(255.0).mul_(2.0).sub_(1.0)


def tensor_to_device_pixels(tensor: torch.Tensor) -> DevicePixels:
    """Return a 1 x 3 x H x W (or 3 x H x W) tensor in [-1, 1] as H x W x 3 uint8
    pixels on the tensor's own device.

    Values outside [-1, 1] are clipped; rounding is to the nearest level, as
    diffusers' `VaeImageProcessor` rounds.
    """
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected a 3 x H x W tensor, got shape {tuple(tensor.shape)}")
    levels = (tensor.float() / 2 + 0.5).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return levels.permute(1, 2, 0).contiguous()


def tensor_to_pixels(tensor: torch.Tensor) -> Pixels:
    """`tensor_to_device_pixels`, copied to the host as an array."""
    pixels: Pixels = tensor_to_device_pixels(tensor).cpu().numpy()
    return pixels
