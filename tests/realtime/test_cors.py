"""CORS for the API: pages of a `--cors-origin` origin may use WHIP/WHEP from a browser,
other origins get no grant. httpx checks the headers; Chromium, on a page served from
another origin (a second HTTP server on another port), publishes its fake webcam by WHIP
and plays the session by WHEP, or fails at the preflight without the flag."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from aiortc import RTCPeerConnection
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page
from support import StartServer, eventually

from realtime.bench.harness import ServerProcess

PAGE_DIR = Path(__file__).parent / "cross_origin"
LISTED = "https://app.example.com"
OTHER = "https://evil.example"
KEY = "cors-key-0123456789abcdef"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    """Another origin (127.0.0.1 on another port) serving the test page."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(PAGE_DIR))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as pages:
        thread = threading.Thread(target=pages.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{pages.server_address[1]}"
        pages.shutdown()
        thread.join(15)


@pytest.fixture(scope="module")
def server(start_server: StartServer, page_origin: str) -> ServerProcess:
    return start_server("--model", "invert", "--cors-origin", LISTED, "--cors-origin", page_origin)


def preflight(url: str, origin: str, method: str = "POST") -> httpx.Response:
    """What a browser sends before a WHIP POST with a bearer credential."""
    return httpx.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, if-match",
        },
    )


def header_list(response: httpx.Response, name: str) -> set[str]:
    return {item.strip().lower() for item in response.headers.get(name, "").split(",")}


@pytest.mark.parametrize("path", ["/v1/whip", "/v1/whep/some-session", "/v1/whip/some-session"])
def test_a_listed_origin_gets_the_preflight_grant(server: ServerProcess, path: str) -> None:
    answer = preflight(f"{server.http_url}{path}", LISTED)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == LISTED
    assert "origin" in header_list(answer, "Vary")
    assert {"post", "delete", "patch", "options"} <= header_list(
        answer, "Access-Control-Allow-Methods"
    )
    assert {"authorization", "content-type", "if-match"} <= header_list(
        answer, "Access-Control-Allow-Headers"
    )


def test_another_origin_gets_no_grant(server: ServerProcess, start_server: StartServer) -> None:
    unlisted = preflight(f"{server.http_url}/v1/whip", OTHER)
    assert "Access-Control-Allow-Origin" not in unlisted.headers
    assert unlisted.status_code == 400
    # Without the flag, not even a listed origin: no CORS at all, as before.
    plain = start_server("--model", "invert")
    for origin in (LISTED, OTHER):
        answer = preflight(f"{plain.http_url}/v1/whip", origin)
        assert "Access-Control-Allow-Origin" not in answer.headers, answer.headers


def test_whip_options_without_preflight_still_advertise_sdp(server: ServerProcess) -> None:
    for path in ("/v1/whip", "/v1/whep/some-session"):
        answer = httpx.options(f"{server.http_url}{path}", headers={"Origin": LISTED})
        assert answer.status_code == 204
        assert answer.headers["Accept-Post"] == "application/sdp"


def test_a_whip_answer_exposes_location_to_a_listed_origin(server: ServerProcess) -> None:
    async def offer() -> str:
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        await pc.close()
        return str(pc.localDescription.sdp)

    with httpx.Client(base_url=server.http_url, headers={"Origin": LISTED}) as page:
        answer = page.post(
            "/v1/whip?model=invert",
            content=asyncio.run(offer()),
            headers={"Content-Type": "application/sdp"},
        )
        assert answer.status_code == 201, answer.text
        assert answer.headers["Access-Control-Allow-Origin"] == LISTED
        assert {"location", "link", "etag", "retry-after"} <= header_list(
            answer, "Access-Control-Expose-Headers"
        )
        assert page.delete(answer.headers["Location"]).status_code == 200


def sessions(server: ServerProcess) -> float:
    """The server's `realtime_sessions` gauge, summed."""
    text = httpx.get(f"{server.http_url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("realtime_sessions{")
    )


CLIENTS = {
    "fetch": "index.html",  # RFC 9725 by hand: fetch and RTCPeerConnection
    "whip-whep": "medooze.html",  # the npm package (medooze's whip.js / whep.js)
    "eyevinn": "eyevinn.html",  # @eyevinn/whip-web-client and @eyevinn/webrtc-player
}
INSTALLED = {  # what `make test-npm-deps` makes for each npm client's page
    "whip-whep": "node_modules/whip-whep",
    "eyevinn": "node_modules/.bundle/eyevinn.js",
}


def client_page(client: str) -> str:
    """The test page of `client`; the npm ones need `make test-npm-deps` (CI must have it)."""
    page = CLIENTS[client]
    if client in INSTALLED and not (PAGE_DIR / INSTALLED[client]).exists():
        missing = f"{client} is not installed: run `make test-npm-deps`"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    return page


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_page_of_a_listed_origin_publishes_by_whip_and_plays_by_whep(
    browser_page: Page, server: ServerProcess, page_origin: str, client: str
) -> None:
    await browser_page.goto(f"{page_origin}/{client_page(client)}")
    # Page scripts may await forever (a fetch, ICE): every wait here is bounded.
    resources = await asyncio.wait_for(
        browser_page.evaluate("publishAndPlay", server.http_url), TIMEOUT_MS / 1000
    )
    assert resources["session"].startswith(f"{server.http_url}/v1/whip/")
    assert resources["viewer"].startswith(f"{server.http_url}/v1/whep/")
    await browser_page.wait_for_function(
        "document.getElementById('output').currentTime > 1", timeout=TIMEOUT_MS
    )
    # The fake webcam's green background is still; the played video is its inverse.
    sample = await browser_page.evaluate("sample(0.1, 0.9)")
    for camera, output in zip(sample["camera"], sample["output"], strict=True):
        assert abs(output - (255 - camera)) < 30, sample
    # DELETEs the viewer, then the session.
    await asyncio.wait_for(browser_page.evaluate("stop()"), TIMEOUT_MS / 1000)
    await eventually(lambda: sessions(server) == 0, "the session to end")


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("client", CLIENTS)
async def test_without_the_flag_the_browser_refuses_at_the_preflight(
    browser_page: Page, start_server: StartServer, page_origin: str, client: str
) -> None:
    server = start_server("--model", "invert")
    console: list[str] = []
    browser_page.on("console", lambda message: console.append(message.text))
    await browser_page.goto(f"{page_origin}/{client_page(client)}")
    with pytest.raises(PlaywrightError, match="Failed to fetch"):
        await browser_page.evaluate("publishAndPlay", server.http_url)
    assert any("CORS policy" in line for line in console), console
    assert sessions(server) == 0


def test_with_a_key_the_same_list_grants_cors(start_server: StartServer) -> None:
    keyed = start_server("--model", "invert", "--api-key", KEY, "--cors-origin", LISTED)
    assert preflight(f"{keyed.http_url}/v1/whip", LISTED).headers["Access-Control-Allow-Origin"]
    assert (
        "Access-Control-Allow-Origin" not in preflight(f"{keyed.http_url}/v1/whip", OTHER).headers
    )
    # The grant lets the page read the answer; the key still decides it.
    for origin, granted in ((LISTED, True), (OTHER, False)):
        answer = httpx.get(f"{keyed.http_url}/v1/models", headers={"Origin": origin})
        assert answer.status_code == 401
        assert ("Access-Control-Allow-Origin" in answer.headers) is granted
