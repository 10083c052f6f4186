"""Shared fixtures: a model cache for the run, `realtime serve` processes and a browser."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import browser
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page
from support import StartServer, running_server

from realtime.bench.harness import ServerProcess
from realtime.ice import restrict_host_candidates

if TYPE_CHECKING:
    from family_builders import FamilyFolders

# Test peers, like the test servers, offer WebRTC candidates on loopback only.
restrict_host_candidates(["127.0.0.1"])


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One REALTIME_CACHE for the run, so the tiny model's weights are built once."""
    return tmp_path_factory.mktemp("realtime-cache")


@pytest.fixture(scope="session")
def family_folders(tmp_path_factory: pytest.TempPathFactory) -> FamilyFolders:
    """Each diffusion family's tiny random pipeline, saved as on the hub, built once per run."""
    from family_builders import build_family_folders  # torch, diffusers, peft: only when used

    return build_family_folders(tmp_path_factory.mktemp("families"))


@pytest.fixture(scope="session")
def start_server(model_cache: Path) -> Iterator[StartServer]:
    """Start `realtime serve ARGS` on a free port; returns once it logged that it is ready."""
    with ExitStack() as servers:

        def start(*args: str) -> ServerProcess:
            return servers.enter_context(running_server(*args, cache=model_cache))

        yield start


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium() -> AsyncIterator[Browser]:
    """One headless Chromium for the run (see tests/browser.py); skips where it cannot run.
    Playwright objects belong to the event loop that made them, so tests using this
    (or `browser_page`) run in the session loop: `pytest.mark.asyncio(loop_scope="session")`."""
    reason = browser.why_not_runnable()
    if reason is not None and os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests: {reason}")  # never a silent skip there
    if reason is not None:
        pytest.skip(reason)
    async with browser.chromium() as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def browser_page(chromium: Browser) -> AsyncIterator[Page]:
    """A fresh page (its own browser context) of the run's Chromium, for one test."""
    async with browser.new_page(chromium) as page:
        yield page
