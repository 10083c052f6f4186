"""The web demo in headless Chromium with a fake webcam, against a real server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import FilePayload, Page
from support import StartServer, eventually, running_server

from realtime.bench.harness import ServerProcess

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--model", "tiny", "--model", "tiny-avatar")


async def stats(page: Page) -> dict[str, object]:
    result: dict[str, object] = await page.evaluate("window.demoStats")
    return result


async def count(page: Page, counter: str) -> int:
    """One of the demo's frame counters (window.demoStats)."""
    return int(await page.evaluate(f"window.demoStats.{counter}"))


async def wait_for_frames(page: Page, more_than: int) -> None:
    await page.wait_for_function(
        f"window.demoStats.connected && window.demoStats.framesReceived > {more_than}",
        timeout=TIMEOUT_MS,
    )


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_the_page_streams_the_inverted_camera(
    browser_page: Page,
    server: ServerProcess,
    transport: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    await browser_page.goto(f"{server.http_url}/?transport={transport}&model=invert")
    await wait_for_frames(browser_page, 20)
    current = await stats(browser_page)
    assert current["transport"] == transport
    assert isinstance(current["framesSent"], int) and current["framesSent"] > 0
    assert isinstance(current["fps"], int) and current["fps"] > 0
    assert current["latencyMs"] is not None
    # The fake webcam's green background is still; compare one of its pixels.
    sample = await browser_page.evaluate("window.demoSample(0.1, 0.9)")
    for camera, output in zip(sample["camera"], sample["output"], strict=True):
        assert abs(output - (255 - camera)) < 30, sample
    folder = tmp_path_factory.mktemp("web-demo")
    await browser_page.screenshot(path=folder / f"{transport}.png")
    assert (folder / f"{transport}.png").stat().st_size > 10_000


async def test_a_prompt_typed_in_the_page_reaches_the_server(
    browser_page: Page, server: ServerProcess
) -> None:
    await browser_page.goto(f"{server.http_url}/?transport=websocket&model=tiny")
    await wait_for_frames(browser_page, 2)
    await browser_page.fill("input[name=prompt]", "a neon city at night")
    # The server's params answer, which the page keeps, shows the new prompt.
    await browser_page.wait_for_function(
        "window.demoStats.params.prompt === 'a neon city at night'", timeout=TIMEOUT_MS
    )


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_type_to_image_in_the_page_sends_no_frames(
    browser_page: Page, server: ServerProcess, transport: str
) -> None:
    await browser_page.goto(f"{server.http_url}/?transport={transport}&model=tiny&mode=text")
    await wait_for_frames(browser_page, 0)  # the image for the default prompt
    assert await browser_page.is_checked("#text-only")
    received = await count(browser_page, "framesReceived")
    await browser_page.fill("input[name=prompt]", "a lighthouse in a storm")
    await browser_page.wait_for_function(
        "window.demoStats.params.prompt === 'a lighthouse in a storm'", timeout=TIMEOUT_MS
    )
    await wait_for_frames(browser_page, received)
    assert await count(browser_page, "framesSent") == 0


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_the_page_reconnects_after_a_server_restart(
    browser_page: Page, model_cache: Path, transport: str
) -> None:
    with running_server("--model", "invert", cache=model_cache) as first:
        port = first.port
        await browser_page.goto(f"{first.http_url}/?transport={transport}")
        await wait_for_frames(browser_page, 5)
    # The page says so on screen while it retries (read in the page: the countdown before
    # the next try can be shorter than a round trip from here).
    await browser_page.wait_for_function(
        "!window.demoStats.connected && "
        "document.getElementById('status').textContent.includes('reconnecting')",
        timeout=TIMEOUT_MS,
    )
    received = await count(browser_page, "framesReceived")
    with running_server("--model", "invert", cache=model_cache, port=port):
        await wait_for_frames(browser_page, received + 10)


async def test_when_webrtc_cannot_connect_the_page_says_so_and_streams_over_websocket(
    browser_page: Page, model_cache: Path
) -> None:
    # Candidates on an address this machine does not have (TEST-NET-1): the server
    # offers none that ICE can use, so the browser's checks never succeed.
    with running_server(
        "--model", "invert", cache=model_cache, ice_addresses=("192.0.2.1",)
    ) as server:
        await browser_page.goto(f"{server.http_url}/?transport=webrtc&model=invert")
        await browser_page.wait_for_function(
            "window.demoStats.transport === 'websocket' && window.demoStats.framesReceived > 5",
            timeout=TIMEOUT_MS,
        )
        note = await browser_page.text_content("#note") or ""
        assert "WebRTC could not connect" in note and "WebSocket" in note, note
        checked = await browser_page.is_checked("input[name=transport][value=websocket]")
        assert checked


async def test_webrtc_works_out_of_the_box_on_a_loopback_server(
    browser_page: Page, model_cache: Path
) -> None:
    # `realtime serve` as `make serve` runs it: on 127.0.0.1, no --ice-address.
    with running_server("--model", "invert", cache=model_cache, ice_addresses=()) as server:
        await browser_page.goto(f"{server.http_url}/?transport=webrtc&model=invert")
        await wait_for_frames(browser_page, 10)
        assert (await stats(browser_page))["transport"] == "webrtc"


# Avatar mode: a reference image, snapped from the camera or uploaded, for tiny-avatar.

CORRUPT: FilePayload = {
    "name": "corrupt.jpg",
    "mimeType": "image/jpeg",
    "buffer": b"\xff\xd8 not a jpeg",
}


async def session_id(page: Page) -> str:
    return str(await page.evaluate("window.demoStats.sessionId"))


async def reference_reached(server: ServerProcess, session: str, method: str = "PUT") -> None:
    """The server answered `method` on `session`'s reference with 200 (its access log says so)."""
    done = f'"{method} /v1/sessions/{session}/reference HTTP/1.1" 200'
    await eventually(lambda: any(done in line for line in server.log), f"{method} of {session}")


async def snap_reference(page: Page) -> str:
    """Snap the camera as the reference; returns the thumbnail's URL once it shows."""
    await page.click("#snap")
    await page.wait_for_function(
        "document.getElementById('reference').naturalWidth > 0", timeout=TIMEOUT_MS
    )
    assert await page.is_visible("#reference")
    return str(await page.get_attribute("#reference", "src"))


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_avatar_mode_snaps_a_reference_takes_a_control_and_shows_a_bad_upload(
    browser_page: Page, server: ServerProcess, transport: str
) -> None:
    page = browser_page
    await page.goto(f"{server.http_url}/?transport={transport}&model=tiny")
    await wait_for_frames(page, 0)
    assert await page.is_hidden("#avatar")
    await page.check("input[name=mode][value=avatar]")
    # The model with an IP-Adapter, in a new session.
    await page.wait_for_function(
        "window.demoStats.connected && window.demoStats.status.includes('tiny-avatar')",
        timeout=TIMEOUT_MS,
    )
    assert await page.input_value("#model") == "tiny-avatar"
    assert "avatar=1" in page.url
    thumbnail = await snap_reference(page)
    await reference_reached(server, await session_id(page))

    await page.select_option("select[name=control]", "canny")
    await page.wait_for_function("window.demoStats.params.control === 'canny'", timeout=TIMEOUT_MS)
    received = await count(page, "framesReceived")
    # The control hop's time, in the overlay: shown once it is > 0.
    await page.wait_for_function(
        "window.demoStats.controlMs > 0 && "
        "document.getElementById('stat-control').textContent.endsWith(' ms')",
        timeout=TIMEOUT_MS,
    )
    await wait_for_frames(page, received + 3)

    await page.set_input_files("#upload", files=[CORRUPT])
    await page.wait_for_function(
        "document.getElementById('note').textContent.includes('invalid_params')",
        timeout=TIMEOUT_MS,
    )
    assert "reference" in (await page.text_content("#note") or "")
    assert await page.get_attribute("#reference", "src") == thumbnail  # the last one stays
    received = await count(page, "framesReceived")
    await wait_for_frames(page, received + 3)


async def test_the_reference_goes_to_each_new_session_with_the_pages_token_until_plain_mode(
    browser_page: Page, model_cache: Path
) -> None:
    key = "demo-key"
    with running_server("--model", "tiny-avatar", "--api-key", key, cache=model_cache) as server:
        token = httpx.post(
            f"{server.http_url}/v1/tokens",
            json={"model": "tiny-avatar"},
            headers={"Authorization": f"Bearer {key}"},
        ).json()["token"]
        page = browser_page
        await page.goto(f"{server.http_url}/?transport=websocket&avatar=1&token={token}")
        await wait_for_frames(page, 0)
        first = await session_id(page)
        await snap_reference(page)
        await reference_reached(server, first)
        await page.check("input[name=transport][value=webrtc]")
        await page.wait_for_function(
            f"window.demoStats.connected && window.demoStats.sessionId !== '{first}'",
            timeout=TIMEOUT_MS,
        )
        await reference_reached(server, await session_id(page))
        # Plain mode: the same session, its reference cleared.
        await page.check("input[name=mode][value=plain]")
        await reference_reached(server, await session_id(page), "DELETE")
        assert await page.is_hidden("#avatar")
