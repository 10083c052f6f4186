"""Sessions belong to the key that opened them: another key, or a token it minted,
cannot watch or end them, and is told exactly what an unknown id would tell it."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from support import StartServer, eventually

from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.webrtc import CameraTrack, RtcClient
from realtime.clients.websocket import ServerError

pytestmark = pytest.mark.asyncio(loop_scope="module")

OWNER, INTRUDER = "owner-key-0123456789", "intruder-key-9876543210"
FRAME_TIMEOUT_S = 30
SDP = {"Content-Type": "application/sdp"}


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--api-key", OWNER, "--api-key", INTRUDER)


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def minted_token(server: ServerProcess, key: str) -> str:
    answer = httpx.post(
        f"{server.http_url}/v1/tokens", json={"model": "invert"}, headers=bearer(key)
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


def sessions(server: ServerProcess) -> int:
    return int(httpx.get(f"{server.http_url}/healthz").json()["sessions"])


def answer_of(response: httpx.Response) -> tuple[int, bytes]:
    return response.status_code, response.content


async def test_another_key_cannot_watch_or_end_a_session(server: ServerProcess) -> None:
    url = server.http_url
    ingest = await RtcClient.whip(url, CameraTrack(gradient_image()), model="invert", api_key=OWNER)
    assert ingest.session_id is not None
    own_viewer = await RtcClient.whep(url, ingest.session_id, api_key=OWNER)
    try:
        assert own_viewer.location is not None
        await asyncio.wait_for(own_viewer.next_frame(), FRAME_TIMEOUT_S)
        viewer_id = own_viewer.location.rsplit("/", 1)[-1]
        for intruder in (INTRUDER, minted_token(server, INTRUDER)):
            headers = bearer(intruder)
            # What an unknown id gets, on each session-scoped endpoint.
            unknown_watch = httpx.post(
                f"{url}/v1/whep/0123456789ab", content=b"v=0", headers=SDP | headers
            )
            unknown_end = httpx.delete(f"{url}/v1/whip/0123456789ab", headers=headers)
            unknown_viewer = httpx.delete(
                f"{url}/v1/whep/0123456789ab/{viewer_id}", headers=headers
            )
            assert unknown_watch.status_code == unknown_end.status_code == 404
            assert unknown_watch.json()["code"] == "not_found"

            watch = httpx.post(
                f"{url}/v1/whep/{ingest.session_id}", content=b"v=0", headers=SDP | headers
            )
            end = httpx.delete(f"{url}{ingest.location}", headers=headers)
            end_viewer = httpx.delete(f"{url}{own_viewer.location}", headers=headers)
            assert answer_of(watch) == answer_of(unknown_watch)
            assert answer_of(end) == answer_of(unknown_end)
            assert answer_of(end_viewer) == answer_of(unknown_viewer)
            with pytest.raises(ServerError) as refused:
                await RtcClient.whep(url, ingest.session_id, api_key=intruder)
            assert (refused.value.status, refused.value.error.code) == (404, "not_found")

        # The owner's session and its viewer went on streaming through all of it.
        assert sessions(server) == 1
        await asyncio.wait_for(own_viewer.next_frame(), FRAME_TIMEOUT_S)
        late_viewer = await RtcClient.whep(url, ingest.session_id, api_key=OWNER)
        try:
            await asyncio.wait_for(late_viewer.next_frame(), FRAME_TIMEOUT_S)
        finally:
            await late_viewer.close()
        owner_token = bearer(minted_token(server, OWNER))
        assert httpx.delete(f"{url}{own_viewer.location}", headers=owner_token).status_code == 200
        assert httpx.delete(f"{url}{ingest.location}", headers=bearer(OWNER)).status_code == 200
        await eventually(lambda: sessions(server) == 0, "the owner's DELETE to end the session")
    finally:
        for client in (ingest, own_viewer):
            await client.close()


async def test_without_a_credential_live_and_unknown_ids_look_the_same(
    server: ServerProcess,
) -> None:
    url = server.http_url
    ingest = await RtcClient.whip(url, CameraTrack(gradient_image()), model="invert", api_key=OWNER)
    try:
        live = httpx.delete(f"{url}{ingest.location}")
        unknown = httpx.delete(f"{url}/v1/whip/0123456789ab")
        assert live.status_code == unknown.status_code == 401
        assert live.content == unknown.content
        live_watch = httpx.post(f"{url}/v1/whep/{ingest.session_id}", content=b"v=0", headers=SDP)
        unknown_watch = httpx.post(f"{url}/v1/whep/0123456789ab", content=b"v=0", headers=SDP)
        assert answer_of(live_watch) == answer_of(unknown_watch)
        assert live_watch.status_code == 401
    finally:
        # Its owner ends it: a peer that never connected would hold it until the timeout.
        httpx.delete(f"{url}{ingest.location}", headers=bearer(OWNER))
        await ingest.close()
        await eventually(lambda: sessions(server) == 0, "the session to end")
