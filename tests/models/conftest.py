"""Fixtures of the model tests (the families' tiny pipelines are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_folder(model_cache: Path) -> Path:
    """The tiny model's weights, as the server builds them under REALTIME_CACHE."""
    from models.tiny import tiny_weights_folder

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REALTIME_CACHE", str(model_cache))
        return tiny_weights_folder()
