"""API keys never travel in URLs: `?token=` takes short-lived tokens only, and the
log never holds a credential that came in a URL."""

from __future__ import annotations

import httpx
import pytest
from support import StartServer, eventually

from realtime.bench.harness import ServerProcess
from realtime.clients.websocket import ServerError, StreamClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY = "url-key-0123456789abcdef"


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--api-key", KEY)


def logged(server: ServerProcess, text: str) -> bool:
    return any(text in line for line in server.log)


async def test_a_key_in_the_url_is_refused_and_a_token_works(server: ServerProcess) -> None:
    with pytest.raises(ServerError) as refusal:
        await StreamClient.connect(server.ws_url, model="invert", token=KEY)
    assert (refusal.value.error.code, refusal.value.close_code) == ("unauthorized", 1008)
    assert "Authorization: Bearer" in refusal.value.error.message
    assert "/v1/tokens" in refusal.value.error.message

    minted = httpx.post(
        f"{server.http_url}/v1/tokens",
        json={"model": "invert"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    token = minted.json()["token"]
    async with await StreamClient.connect(server.ws_url, model="invert", token=token) as client:
        assert client.ready.model == "invert"
    # The web demo is opened as /?token=...: a plain GET with the token in its URL.
    assert httpx.get(f"{server.http_url}/?token={token}").status_code == 200

    # Every one of these requests was logged, with its URL, and without the credential.
    await eventually(lambda: logged(server, "GET /?token="), "the page's access log line")
    await eventually(
        lambda: sum("/v1/stream?model=invert&token=" in line for line in server.log) >= 2,
        "both WebSocket handshakes' log lines",
    )
    assert not logged(server, KEY)
    assert not logged(server, token)
    assert not logged(server, token.split(".")[1])  # not even the signature
