"""API keys, tokens and per-key limits on a real server, over both transports."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from support import StartServer, eventually

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.webrtc import CameraTrack, RtcClient
from realtime.clients.websocket import FrameOutput, ServerError, StreamClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY, OTHER_KEY = "key-one-0123456789", "key-two-9876543210"


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server(
        *("--model", "invert", "--model", "tiny"),
        *("--api-key", KEY, "--api-key", OTHER_KEY, "--max-sessions-per-key", "1"),
        *("--max-token-ttl", "600"),
    )


def token(server: ServerProcess, model: str, ttl: float = 60, key: str = KEY) -> str:
    answer = httpx.post(
        f"{server.http_url}/v1/tokens",
        json={"model": model, "ttl": ttl},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == model
    return str(answer.json()["token"])


async def refused(
    server: ServerProcess, *, api_key: str | None = None, token: str | None = None
) -> ServerError:
    with pytest.raises(ServerError) as refusal:
        await StreamClient.connect(server.ws_url, model="invert", api_key=api_key, token=token)
    return refusal.value


async def test_a_websocket_needs_a_key_and_a_wrong_one_is_refused(server: ServerProcess) -> None:
    for credentials in ({}, {"api_key": "guess"}, {"token": "not.atoken"}):
        refusal = await refused(server, **credentials)
        assert (refusal.error.code, refusal.close_code) == ("unauthorized", 1008)
    async with await StreamClient.connect(server.ws_url, model="invert", api_key=KEY) as client:
        assert client.ready.model == "invert"


async def test_http_needs_the_key_but_healthz_stays_open(server: ServerProcess) -> None:
    assert httpx.get(f"{server.http_url}/healthz").status_code == 200
    missing = httpx.get(f"{server.http_url}/v1/models")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json()["code"] == "unauthorized"
    with_key = httpx.get(f"{server.http_url}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert with_key.status_code == 200
    assert httpx.get(f"{server.http_url}/metrics").status_code == 401


async def test_tokens_are_scoped_to_a_model_and_cannot_be_forged(server: ServerProcess) -> None:
    invert_token = token(server, "invert")
    async with await StreamClient.connect(
        server.ws_url, model="invert", token=invert_token
    ) as client:
        assert client.ready.model == "invert"
    wrong_model = await refused_for(server, "tiny", invert_token)
    assert (wrong_model.error.code, wrong_model.close_code) == ("forbidden", 1008)
    forged = invert_token[:-2] + ("AA" if not invert_token.endswith("AA") else "BB")
    assert (await refused(server, token=forged)).error.code == "unauthorized"
    # A token cannot mint tokens, and ttl is bounded.
    minted = httpx.post(
        f"{server.http_url}/v1/tokens",
        json={"model": "invert"},
        headers={"Authorization": f"Bearer {invert_token}"},
    )
    assert (minted.status_code, minted.json()["code"]) == (403, "forbidden")
    too_long = httpx.post(
        f"{server.http_url}/v1/tokens",
        json={"model": "invert", "ttl": 601},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert (too_long.status_code, too_long.json()["field"]) == (400, "ttl")


async def refused_for(server: ServerProcess, model: str, token: str) -> ServerError:
    with pytest.raises(ServerError) as refusal:
        await StreamClient.connect(server.ws_url, model=model, token=token)
    return refusal.value


async def test_an_expired_token_is_refused_but_a_started_session_goes_on(
    server: ServerProcess,
) -> None:
    short = token(server, "invert", ttl=1.0)
    async with await StreamClient.connect(server.ws_url, model="invert", token=short) as client:
        await asyncio.sleep(1.5)
        assert (await refused(server, token=short)).error.message.startswith(
            "the token has expired"
        )
        await client.send_frame(encode_image(gradient_image(), "jpeg"))
        assert isinstance(await asyncio.wait_for(client.receive(), 30), FrameOutput)


async def test_each_key_has_its_own_session_limit(server: ServerProcess) -> None:
    # Earlier tests' sessions are freed just after their clients close: start from none.
    healthz = f"{server.http_url}/healthz"
    await eventually(lambda: httpx.get(healthz).json()["sessions"] == 0, "earlier sessions")
    async with await StreamClient.connect(server.ws_url, model="invert", api_key=KEY):
        limited = await refused(server, api_key=KEY)
        assert (limited.error.code, limited.close_code) == ("key_session_limit", 1013)
        # The limit counts tokens of that key too, and other keys are not affected.
        assert (await refused(server, token=token(server, "invert"))).error.code == (
            "key_session_limit"
        )
        async with await StreamClient.connect(server.ws_url, model="invert", api_key=OTHER_KEY):
            pass


async def test_webrtc_takes_a_bearer_key_or_a_token_in_the_offer(server: ServerProcess) -> None:
    with pytest.raises(ServerError) as refusal:
        await RtcClient.offer(server.http_url, camera=CameraTrack(gradient_image()))
    assert (refusal.value.status, refusal.value.error.code) == (401, "unauthorized")
    client = await RtcClient.offer(
        server.http_url, camera=CameraTrack(gradient_image()), token=token(server, "invert")
    )
    await client.close()
    ingest = await RtcClient.whip(
        server.http_url, CameraTrack(gradient_image()), model="invert", api_key=OTHER_KEY
    )
    try:
        assert httpx.delete(f"{server.http_url}{ingest.location}").status_code == 401
        deleted = httpx.delete(
            f"{server.http_url}{ingest.location}", headers={"Authorization": f"Bearer {OTHER_KEY}"}
        )
        assert deleted.status_code == 200
    finally:
        await ingest.close()
