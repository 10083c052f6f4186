"""A server with no key, and the pages of other sites: what a browser would send for them
(another `Origin`, a form or text/plain post, a rebound DNS name in `Host`) is refused;
its own pages, apps without `Origin` and `--cors-origin` origins get in."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from support import StartServer, serve_usage_error
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from realtime.bench.harness import ServerProcess
from realtime.server.origins import LOOPBACK_NAMES, allowed_hosts

ASYNC = pytest.mark.asyncio(loop_scope="module")

LISTED = "https://app.example.com"
EVIL = "http://evil.example"
KEY = "origins-key-0123456789"


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--cors-origin", LISTED)


async def upgrade(
    server: ServerProcess,
    *,
    origin: str | None = None,
    host: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Open /v1/stream as a browser at `origin` whose DNS gave `host` would; returns the
    first message (`ready`), or the refusal's HTTP status and JSON body."""
    url = f"ws://{host or f'127.0.0.1:{server.port}'}/v1/stream?model=invert"
    try:
        async with connect(
            url,
            origin=None if origin is None else Origin(origin),
            host="127.0.0.1",
            port=server.port,
            additional_headers=headers,
        ) as websocket:
            message: dict[str, Any] = orjson.loads(await websocket.recv())
            return message
    except InvalidStatus as refusal:
        return {
            "status": refusal.response.status_code,
            **orjson.loads(refusal.response.body or b"{}"),
        }


def refused_for(answer: dict[str, Any], field: str) -> bool:
    return (answer["status"], answer["code"], answer["field"]) == (403, "forbidden", field)


@ASYNC
async def test_a_page_of_another_site_cannot_open_a_session(server: ServerProcess) -> None:
    for origin in (EVIL, "null", f"http://127.0.0.1:{server.port + 1}", "https://app.example.co"):
        assert refused_for(await upgrade(server, origin=origin), "origin"), origin


@ASYNC
async def test_its_own_pages_apps_and_listed_origins_can(server: ServerProcess) -> None:
    for origin in (f"http://127.0.0.1:{server.port}", None, LISTED):
        assert (await upgrade(server, origin=origin))["type"] == "ready", origin


@ASYNC
async def test_another_site_cannot_post_offers_or_end_sessions(server: ServerProcess) -> None:
    offer = {"type": "offer", "sdp": "v=0\r\n", "model": "invert"}
    async with httpx.AsyncClient(base_url=server.http_url, headers={"Origin": EVIL}) as page:
        answers = [
            await page.post("/v1/webrtc/offer", json=offer),
            await page.post(
                "/v1/whip", content=b"v=0\r\n", headers={"Content-Type": "application/sdp"}
            ),
            await page.delete("/v1/whip/0123456789ab"),
        ]
        # Reading is no harm: the page cannot see the answer (no CORS headers).
        assert (await page.get("/v1/models")).status_code == 200
    for answer in answers:
        assert refused_for({"status": answer.status_code, **answer.json()}, "origin")


@ASYNC
async def test_offers_are_json_only(server: ServerProcess) -> None:
    """What a form can post without asking (text/plain, urlencoded) is not an offer, even
    without an Origin header (older browsers leave it out of some form posts)."""
    offer = orjson.dumps({"type": "offer", "sdp": "v=0\r\n", "model": "invert"})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        answer = httpx.post(
            f"{server.http_url}/v1/webrtc/offer",
            content=offer,
            headers={"Content-Type": content_type},
        )
        assert (answer.status_code, answer.json()["field"]) == (415, "content-type"), content_type


@ASYNC
async def test_a_rebound_name_is_refused_on_loopback(server: ServerProcess) -> None:
    """DNS rebinding: evil.example now resolves to 127.0.0.1, so its page is same-origin."""
    rebound = f"evil.example:{server.port}"
    answer = httpx.get(f"{server.http_url}/v1/models", headers={"Host": rebound})
    assert refused_for({"status": answer.status_code, **answer.json()}, "host")
    assert httpx.get(f"{server.http_url}/", headers={"Host": rebound}).status_code == 403
    assert refused_for(await upgrade(server, origin=f"http://{rebound}", host=rebound), "host")
    for host in (f"localhost:{server.port}", f"[::1]:{server.port}", "127.0.0.1", "LOCALHOST"):
        assert httpx.get(f"{server.http_url}/v1/models", headers={"Host": host}).status_code == 200


@ASYNC
async def test_a_public_bind_answers_any_name_but_not_other_sites(
    start_server: StartServer,
) -> None:
    public = start_server("--model", "invert", "--host", "0.0.0.0")
    name = f"media.example:{public.port}"
    assert httpx.get(f"{public.http_url}/v1/models", headers={"Host": name}).status_code == 200
    assert (await upgrade(public, origin=f"http://{name}", host=name))["type"] == "ready"
    assert refused_for(await upgrade(public, origin=EVIL, host=name), "origin")


@ASYNC
async def test_with_keys_the_credentials_are_the_guard(start_server: StartServer) -> None:
    """A page of any origin that was given a credential may use the server."""
    keyed = start_server("--model", "invert", "--api-key", KEY)
    with_key = {"Authorization": f"Bearer {KEY}"}
    assert (await upgrade(keyed, origin=EVIL, headers=with_key))["type"] == "ready"
    assert (await upgrade(keyed, origin=EVIL))["code"] == "unauthorized"
    models = httpx.get(f"{keyed.http_url}/v1/models", headers={"Host": "evil.example", **with_key})
    assert models.status_code == 200


@pytest.mark.parametrize(
    ("bind", "names"),
    [
        ("127.0.0.1", LOOPBACK_NAMES),
        ("localhost", LOOPBACK_NAMES),
        ("::1", LOOPBACK_NAMES),
        ("127.0.0.2", (*LOOPBACK_NAMES, "127.0.0.2")),
        ("0.0.0.0", None),
        ("::", None),
        ("192.168.1.20", None),
        ("media.example", None),
    ],
)
def test_only_a_loopback_bind_limits_the_host_names(
    bind: str, names: tuple[str, ...] | None
) -> None:
    assert allowed_hosts(bind) == names


def test_a_cors_origin_must_be_an_origin() -> None:
    refused = serve_usage_error("--cors-origin", "app.example.com/page")
    assert "--cors-origin: must be an origin such as https://" in refused
