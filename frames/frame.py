"""The unit of the data path: one decoded image with its number and timestamps,
and the names of the image formats it travels in (frames/codecs.py encodes them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # only for the annotation: the session core never imports torch
    import torch

Pixels = npt.NDArray[np.uint8]
"""An RGB image, shape (height, width, 3), dtype uint8."""

DevicePixels: TypeAlias = "torch.Tensor"
"""Pixels kept on the model's device (frames/device_codec.py): a (height, width, 3)
uint8 torch tensor, from the decode through the model to the encode."""

ImageFormat = Literal["jpeg", "png", "webp"]
IMAGE_FORMATS: tuple[ImageFormat, ...] = ("jpeg", "png", "webp")
"""The formats frames/codecs.py decodes and encodes. Here, not there, so that naming
them (session/params.py's `output_format`) imports no codec library."""


@dataclass(frozen=True, slots=True)
class ControlImage:
    """A control signal computed from a camera frame (frames/annotators.py): the
    annotator's name ("face", "canny") and its image, as large as the frame."""

    control: str
    pixels: Pixels


@dataclass(slots=True)
class Frame:
    """One input frame, as the session and worker see it.

    `index` is the frame's number in its session (1, 2, 3, ... in arrival order).
    `pixels` is None for a type-to-image request: an image made from params alone.
    `received_at` is the monotonic time its bytes arrived; `timings_ms` gathers
    the milliseconds of each hop of the data path (decode, queue, model, encode)
    so latency can be read off every output. `tag` is the client's own name for
    the input (fal's `request_id`), echoed with the output made from it.
    `control` is the control image computed from it in the decode hop, for a
    session that asked for one (its `control` param).
    """

    pixels: Pixels | None
    index: int
    received_at: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    tag: object = None
    control: ControlImage | None = None
