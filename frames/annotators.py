"""Placeholder: replaced by the annotators branch (canny, face)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from frames.frame import Pixels

CONTROLS: tuple[str, ...] = ("canny", "face")


class Annotator(Protocol):
    def __call__(self, pixels: Pixels) -> Pixels: ...

    def close(self) -> None: ...


class _Edges:
    def __call__(self, pixels: Pixels) -> Pixels:
        grey = pixels.astype(np.float32).mean(axis=2)
        edges = (np.abs(np.gradient(grey, axis=0)) + np.abs(np.gradient(grey, axis=1))) > 20
        return np.repeat((edges * 255).astype(np.uint8)[..., None], 3, axis=2)

    def close(self) -> None:
        pass


def annotator_for(control: str) -> Annotator:
    return _Edges()
