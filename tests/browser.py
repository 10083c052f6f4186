"""Browser-test helpers: Debian's headless Chromium, driven by Playwright's async API.

Chromium runs only where the network is loopback only (`make test` runs pytest
through `tests/loopback-only`, a network namespace holding nothing but `lo`):
WebRTC in a browser would otherwise gather and probe the machine's other
addresses. Elsewhere the browser fixtures skip, unless BROWSER_TESTS_ANY_NETWORK=1.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))  # Debian's package

CHROMIUM_FLAGS = [
    "--use-fake-device-for-media-stream",  # a test-pattern webcam
    "--use-fake-ui-for-media-stream",  # grant getUserMedia without a prompt
    "--allow-loopback-in-peer-connection",  # WebRTC host candidates on 127.0.0.1
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def loopback_only() -> bool:
    """Whether this process's network namespace has no interface but `lo`."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def why_not_runnable() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium as root"
    if not loopback_only() and os.environ.get("BROWSER_TESTS_ANY_NETWORK") != "1":
        return (
            "the network is not loopback only: run pytest through tests/loopback-only "
            "(as `make test` does), or set BROWSER_TESTS_ANY_NETWORK=1"
        )
    return None


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium with a fake webcam, closed on exit."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def new_page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh browser context (its own cookies, storage and permissions)."""
    context = await browser.new_context(viewport={"width": 800, "height": 600})
    try:
        yield await context.new_page()
    finally:
        await context.close()


@asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    """`chromium()` and `new_page()` in one, for a test that wants its own browser."""
    async with chromium() as browser, new_page(browser) as page:
        yield page


async def show_on_origin(page: Page, url: str, html: str) -> None:
    """Show `html` (a test's own page) as if `url`, which the server under test must
    answer, had served it. The page is then on the server's origin: a secure context
    on http://127.0.0.1, so getUserMedia works, and fetch and WebSocket go same-origin.
    A page answered by Playwright itself (`page.route`) would not do: Chromium's Local
    Network Access checks count it as public and block its WebSockets to loopback."""
    await page.goto(url)
    await page.set_content(html)


async def screenshot(page: Page, path: Path) -> Path:
    """Save what the page shows as a PNG at `path`, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=path)
    return path
