"""The codec for a model's device: JPEG through nvjpeg on CUDA, else frames/codecs.py.

On CUDA, torchvision's `decode_jpeg(..., device="cuda")` decodes with nvjpeg
straight into device memory and `encode_jpeg` of a CUDA tensor encodes there, so
a frame crosses the PCIe bus as compressed bytes only: it stays a uint8 H x W x 3
tensor (`DevicePixels`) from the decode, through the model, to the encode. Where
that path is missing (no torchvision, one too old, no CUDA, or one built without
nvjpeg) `codec_for` says why in one log line and returns the CPU codec.

The same limits hold on both: a JPEG's headers are checked by frames/codecs.py
(`check_jpeg`) before nvjpeg sees it. PNG and WebP always go through the CPU codec.

Where the GPU path differs from the CPU codec:
- nvjpeg decodes at full size (no reduced-DCT decode), then `fit_on_device`
  crops and resizes with torch's antialiased bilinear filter, which follows
  Pillow's but may differ by a level here and there;
- torchvision's nvjpeg encoder writes 4:4:4 chroma (the CPU codec writes 4:2:0):
  larger files at the same quality, and one encode at a time per process.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Protocol

import numpy as np

from frames.codecs import (
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIZE,
    BadImage,
    ImageFormat,
    check_jpeg,
    decode_to_size,
    encode_image,
    sniff_format,
)
from frames.frame import DevicePixels, Pixels
from frames.geometry import centre_crop

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MIN_TORCHVISION = (0, 19)
"""The first torchvision that encodes JPEG on CUDA and decodes lists of JPEGs there."""


class Codec(Protocol):
    """Decodes input bytes to pixels at the model's size, and encodes outputs."""

    on_device: bool
    """True when decoded pixels are `DevicePixels` on the model's device, and the
    model should hand back its outputs there too (FewStepModel.run_on_device)."""

    def decode(
        self,
        data: bytes,
        width: int,
        height: int,
        *,
        max_size: int = MAX_IMAGE_SIZE,
        max_pixels: int = MAX_IMAGE_PIXELS,
    ) -> Pixels | DevicePixels: ...

    def encode(
        self, pixels: Pixels | DevicePixels, image_format: ImageFormat, quality: int
    ) -> bytes: ...


class CpuCodec:
    """frames/codecs.py: simplejpeg for JPEG, Pillow for PNG and WebP."""

    on_device = False

    def decode(
        self,
        data: bytes,
        width: int,
        height: int,
        *,
        max_size: int = MAX_IMAGE_SIZE,
        max_pixels: int = MAX_IMAGE_PIXELS,
    ) -> Pixels:
        return decode_to_size(data, width, height, max_size=max_size, max_pixels=max_pixels)

    def encode(
        self, pixels: Pixels | DevicePixels, image_format: ImageFormat, quality: int
    ) -> bytes:
        return encode_image(on_host(pixels), image_format, quality)


class NvjpegCodec:
    """JPEG through torchvision's nvjpeg path on `device`; anything else on the CPU."""

    on_device = True

    def __init__(self, device: str) -> None:
        import torch  # here: the CPU codec is torch-free (`invert` needs no torch)

        self.device = torch.device(device)
        self._host = CpuCodec()
        """PNG and WebP, which nvjpeg does not take."""

    def decode(
        self,
        data: bytes,
        width: int,
        height: int,
        *,
        max_size: int = MAX_IMAGE_SIZE,
        max_pixels: int = MAX_IMAGE_PIXELS,
    ) -> Pixels | DevicePixels:
        if sniff_format(data) != "jpeg":
            return self._host.decode(data, width, height, max_size=max_size, max_pixels=max_pixels)
        check_jpeg(data, max_size=max_size, max_pixels=max_pixels)
        import torch

        # decode_jpeg takes the bytes as a CPU tensor; a bytearray, because
        # torch.frombuffer warns on a read-only buffer.
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        from torchvision.io import ImageReadMode, decode_jpeg  # the optional gpu extra

        try:
            chw = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError as error:  # nvjpeg's status, for data the headers did not give away
            raise BadImage(f"corrupt JPEG image: {error}") from error
        return fit_on_device(chw.permute(1, 2, 0), width, height)

    def encode(
        self, pixels: Pixels | DevicePixels, image_format: ImageFormat, quality: int
    ) -> bytes:
        if image_format != "jpeg":
            return self._host.encode(pixels, image_format, quality)
        import torch

        if not isinstance(pixels, torch.Tensor):
            pixels = torch.from_numpy(np.ascontiguousarray(pixels))
        chw = pixels.to(self.device, non_blocking=True).permute(2, 0, 1).contiguous()
        from torchvision.io import encode_jpeg

        encoded: torch.Tensor = encode_jpeg(chw, quality=quality)
        return encoded.cpu().numpy().tobytes()


def fit_on_device(pixels: DevicePixels, width: int, height: int) -> DevicePixels:
    """frames.geometry.fit for an H x W x 3 uint8 tensor, on its device: the same
    centre crop, then torch's antialiased bilinear resize (Pillow's filter, to
    within a level) in float32, as CUDA's antialiased resize takes no uint8."""
    import torch

    src_height, src_width = pixels.shape[:2]
    if (src_width, src_height) == (width, height):
        return pixels
    left, top, crop_width, crop_height = centre_crop(src_width, src_height, width, height)
    cropped = pixels[top : top + crop_height, left : left + crop_width]
    if (crop_width, crop_height) == (width, height):
        return cropped.contiguous()
    nchw = cropped.permute(2, 0, 1)[None].float()
    resized = torch.nn.functional.interpolate(
        nchw, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    return resized[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


@functools.cache
def codec_for(device: str) -> Codec:
    """The codec for a model on `device` ("cpu", "mps", "cuda", "cuda:1" ...): nvjpeg
    on CUDA where torchvision provides it, else the CPU codec (and one log line why)."""
    if not device.startswith("cuda"):
        return CpuCodec()
    missing = _nvjpeg_missing(device)
    if missing is None:
        return NvjpegCodec(device)
    logger.warning("JPEG on the CPU for a model on %s: %s", device, missing)
    return CpuCodec()


def _nvjpeg_missing(device: str) -> str | None:
    """Why torchvision's nvjpeg path cannot run on `device`, or None when it can."""
    import torch

    if not torch.cuda.is_available():
        return "CUDA is not available to torch"
    try:
        import torchvision
    except Exception as error:  # not installed (ImportError), or built for another torch
        return f"torchvision cannot be imported ({error}); install the gpu extra"
    version = tuple(int(part) for part in torchvision.__version__.split("+")[0].split(".")[:2])
    if version < MIN_TORCHVISION:
        wanted = ".".join(map(str, MIN_TORCHVISION))
        return f"torchvision {torchvision.__version__} is older than {wanted}"
    try:  # a tiny round trip: torchvision may be built without nvjpeg
        codec = NvjpegCodec(device)
        grey = encode_image(np.full((16, 16, 3), 128, dtype=np.uint8), "jpeg", 90)
        codec.encode(codec.decode(grey, 16, 16), "jpeg", 90)
    except Exception as error:
        return f"torchvision's nvjpeg path failed ({error})"
    return None


def on_host(pixels: Pixels | DevicePixels) -> Pixels:
    """`pixels` as a host array: copied from the device where they are a tensor
    (for WebRTC's video frames, or a codec that encodes on the CPU)."""
    if isinstance(pixels, np.ndarray):
        return pixels
    host: Pixels = pixels.cpu().numpy()
    return host
