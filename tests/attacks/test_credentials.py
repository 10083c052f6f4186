"""Who may use what: every cell of docs/protocol.md's credential table, tried on a real
server (one with a key, one open), so that the table and the server cannot drift."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import msgpack
import orjson
import pytest
import pytest_asyncio
from aiortc import RTCPeerConnection
from starlette.routing import Mount
from support import StartServer, doc_table
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.websocket import ServerError, StreamClient
from realtime.server.app import create_app, websocket_not_found
from session.protocol import http_status

KEY = "credentials-key-0123456789"
COLUMNS = ("API key", "token", "none, open server", "none, server with keys")
TABLE = {
    row[0].split("`")[0]: dict(zip(COLUMNS, row[1:], strict=True))  # "GET /x` (what)": "GET /x"
    for row in doc_table("### Who may use what")
}
SDP = "application/sdp"
FAL_APP = "fal-ai/fast-turbo-diffusion/image-to-image"


@dataclass(frozen=True)
class Caller:
    server: ServerProcess
    credential: str | None
    owner: str | None
    """The key of the sessions the `{id}` endpoints act on (None: an open server's)."""

    @property
    def headers(self) -> dict[str, str]:
        return _bearer(self.credential)

    @property
    def owner_headers(self) -> dict[str, str]:
        return _bearer(self.owner)


@dataclass(frozen=True)
class Offers:
    """Offers of live peers that never answer back: sessions that exist long enough."""

    camera: str
    viewer: str


@pytest.fixture(scope="module")
def callers(start_server: StartServer) -> dict[str, Caller]:
    keyed = start_server("--model", "invert", "--api-key", KEY, "--fal-app", f"{FAL_APP}=invert")
    open_server = start_server("--model", "invert", "--fal-app", f"{FAL_APP}=invert")
    minted = httpx.post(
        f"{keyed.http_url}/v1/tokens", json={"model": "invert", "ttl": 600}, headers=_bearer(KEY)
    )
    token = minted.json()["token"]
    return {
        "API key": Caller(keyed, KEY, KEY),
        "token": Caller(keyed, token, KEY),
        "none, open server": Caller(open_server, None, None),
        "none, server with keys": Caller(keyed, None, KEY),
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def offers() -> AsyncIterator[Offers]:
    peers = [RTCPeerConnection(), RTCPeerConnection()]
    sdps = []
    for pc, direction in zip(peers, ("sendrecv", "recvonly"), strict=True):
        pc.addTransceiver("video", direction=direction)
        pc.createDataChannel("control")
        await pc.setLocalDescription(await pc.createOffer())
        sdps.append(pc.localDescription.sdp)
    yield Offers(*sdps)
    for pc in peers:
        await pc.close()


def test_the_table_names_every_endpoint_the_server_has() -> None:
    def paths(routes: list[object], prefix: str = "") -> set[str]:
        found = set()
        for route in routes:
            if getattr(route, "endpoint", None) is websocket_not_found:
                continue  # the 404 for WebSockets to any other path: not an endpoint
            path = prefix + getattr(route, "path", "")
            if isinstance(route, Mount) and route.routes:
                found |= paths(list(route.routes), path)
            else:
                found.add(path or "/")
        return found

    documented = {re.sub(r"\{[\w:]+\}", "{}", row.split()[1]) for row in TABLE}
    served = {re.sub(r"\{[\w:]+\}", "{}", path) for path in paths(list(create_app().routes))}
    assert documented == served


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("endpoint", TABLE)
async def test_each_credential_gets_what_the_table_says(
    endpoint: str, column: str, callers: dict[str, Caller], offers: Offers
) -> None:
    cell = TABLE[endpoint][column]
    status = await attempt(endpoint, callers[column], offers)
    if cell.startswith("yes"):
        assert status < 400, f"{endpoint} refused {column} with {status}"
    else:
        assert status == int(cell), f"{endpoint} for {column}"


async def attempt(endpoint: str, caller: Caller, offers: Offers) -> int:
    """The status `caller` gets at `endpoint` (101 for a WebSocket that opened)."""
    async with httpx.AsyncClient(
        base_url=caller.server.http_url, headers=caller.headers, timeout=30
    ) as http:
        match endpoint:
            case "GET /healthz" | "GET /metrics" | "GET /v1/models":
                return (await http.get(endpoint.split()[1])).status_code
            case "GET /":
                return (await http.get("/")).status_code
            case "POST /v1/tokens":
                return (await http.post("/v1/tokens", json={"model": "invert"})).status_code
            case "GET /v1/stream":
                return await open_stream(caller)
            case "GET /{app}/realtime":
                return await open_fal_session(caller)
            case "POST /tokens/":
                apps = {"allowed_apps": ["fast-turbo-diffusion"]}
                return (await http.post("/tokens/", json=apps)).status_code
            case "POST /v1/webrtc/offer":
                offer = {"type": "offer", "sdp": offers.camera, "model": "invert"}
                answer = await http.post("/v1/webrtc/offer", json=offer)
                if answer.status_code == 200:
                    await end(caller, f"/v1/whip/{answer.json()['session_id']}")
                return answer.status_code
            case "POST /v1/whip":
                answer = await post_sdp(http, "/v1/whip?model=invert", offers.camera)
                if answer.status_code == 201:
                    await end(caller, answer.headers["location"])
                return answer.status_code
            case "DELETE /v1/whip/{id}":
                async with owned_session(caller, offers) as session:
                    return (await http.delete(session)).status_code
            case "POST /v1/whep/{id}":
                async with owned_session(caller, offers) as session:
                    watch = session.replace("/whip/", "/whep/")
                    return (await post_sdp(http, watch, offers.viewer)).status_code
            case "DELETE /v1/whep/{id}/{viewer}":
                async with owned_session(caller, offers) as session:
                    watch = session.replace("/whip/", "/whep/")
                    viewer = await post_sdp(http, watch, offers.viewer, caller.owner_headers)
                    assert viewer.status_code == 201, viewer.text
                    return (await http.delete(viewer.headers["location"])).status_code
            case "DELETE /v1/sessions/{id}/reference":
                async with owned_session(caller, offers) as session:
                    session_id = session.rsplit("/", 1)[-1]
                    return (await http.delete(f"/v1/sessions/{session_id}/reference")).status_code
    raise AssertionError(f"the test does not know how to try {endpoint}")


async def open_stream(caller: Caller) -> int:
    # A key travels in the header, a token in the URL, as a browser's does.
    is_key = caller.credential == caller.owner
    try:
        async with await StreamClient.connect(
            caller.server.ws_url,
            model="invert",
            api_key=caller.credential if is_key else None,
            token=None if is_key else caller.credential,
        ):
            return 101
    except ServerError as refusal:
        assert refusal.close_code == 1008
        return http_status(refusal.error.code)


async def open_fal_session(caller: Caller) -> int:
    """101 when a fal request gets its result; else the status of the error's code."""
    url = f"{caller.server.ws_url}/{FAL_APP}/realtime"
    headers = {}
    if caller.credential == caller.owner and caller.credential:  # a key: in the header
        headers["Authorization"] = f"Key {caller.credential}"
    elif caller.credential:  # a token: in the URL, as fal's JS client sends it
        url += f"?fal_jwt_token={caller.credential}"
    async with connect(url, additional_headers=headers) as websocket:
        with contextlib.suppress(ConnectionClosed):  # a refusal may close it first
            await websocket.send(msgpack.packb({"image_bytes": encode_image(gradient_image())}))
        reply = await asyncio.wait_for(websocket.recv(), 30)
    if isinstance(reply, bytes):
        return 101
    return http_status(orjson.loads(reply)["error"])


async def post_sdp(
    http: httpx.AsyncClient, path: str, sdp: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await http.post(path, content=sdp, headers={"Content-Type": SDP, **(headers or {})})


@asynccontextmanager
async def owned_session(caller: Caller, offers: Offers) -> AsyncIterator[str]:
    """A WHIP session of `caller.owner`'s; yields its resource."""
    async with httpx.AsyncClient(base_url=caller.server.http_url, timeout=30) as http:
        created = await post_sdp(http, "/v1/whip?model=invert", offers.camera, caller.owner_headers)
    assert created.status_code == 201, created.text
    try:
        yield created.headers["location"]
    finally:
        await end(caller, created.headers["location"])


async def end(caller: Caller, session: str) -> None:
    """Ends a session as its owner (it may be gone already: then 404)."""
    async with httpx.AsyncClient(base_url=caller.server.http_url, timeout=30) as http:
        assert (await http.delete(session, headers=caller.owner_headers)).status_code in (200, 404)


def _bearer(credential: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"} if credential else {}
