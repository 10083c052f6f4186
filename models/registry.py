"""Model ids -> what they are and how to load them."""

from __future__ import annotations

from collections.abc import Mapping

from models import effects, tiny
from models.base import ModelEntry

REGISTRY: Mapping[str, ModelEntry] = {
    entry.info.id: entry
    for entry in (
        ModelEntry(tiny.TINY, tiny.load_tiny),
        ModelEntry(effects.INVERT, effects.load_invert),
    )
}

DEFAULT_MODEL = "tiny"
"""Served when no --model is given: runs on a CPU and needs no download."""
