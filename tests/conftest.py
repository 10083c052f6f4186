"""Shared fixtures: a model cache for the run and `realtime serve` processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from support import ServerProcess, running_server

from realtime.ice import restrict_host_candidates

# Test peers, like the test servers, offer WebRTC candidates on loopback only.
restrict_host_candidates(["127.0.0.1"])


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One REALTIME_CACHE for the run, so the tiny model's weights are built once."""
    return tmp_path_factory.mktemp("realtime-cache")


@pytest.fixture(scope="session")
def start_server(model_cache: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start `realtime serve ARGS` on a free port; returns once it logged that it is ready."""
    with ExitStack() as servers:
        yield lambda *args: servers.enter_context(running_server(*args, cache=model_cache))
