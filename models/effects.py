"""Exact image effects: no weights, no torch, results a test can check pixel by pixel."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from frames.frame import Pixels
from models.base import ModelInfo, ModelInput
from models.params import ParamSpec

INVERT = ModelInfo(
    id="invert",
    description="Inverts every pixel (255 - value). Exact, for tests and for checking a client.",
    kind="effect",
    width=256,
    height=256,
    params=(
        ParamSpec(
            "delay_ms",
            int,
            0,
            "Extra time each frame spends in the model: simulates a slow model.",
            minimum=0,
            maximum=10_000,
        ),
    ),
)


class InvertModel:
    info = INVERT

    def warmup(self) -> None:
        pass

    def run(self, batch: Sequence[ModelInput]) -> list[Pixels]:
        # One delay per batch, as one call of a real model takes one step.
        delay_ms = max(int(item.params["delay_ms"]) for item in batch)
        if delay_ms:
            time.sleep(delay_ms / 1000)
        outputs = []
        for item in batch:
            assert item.pixels is not None, "invert needs a frame (info.text_to_image is False)"
            # A CPU model: its codec (frames/device_codec.py) decodes to arrays.
            assert isinstance(item.pixels, np.ndarray), "invert runs on the CPU"
            outputs.append(255 - item.pixels)
        return outputs


def load_invert(device: str) -> InvertModel:
    return InvertModel()
