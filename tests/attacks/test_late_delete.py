"""A WHIP or WHEP client that closes its peer connection before its DELETE (RFC 9725
teardown) is told 200 by the server, whose session or viewer ended already; another
key, and an unknown id, are still told 404, as issue 12's ownership rules ask."""

from __future__ import annotations

import httpx
import pytest
from support import StartServer, eventually

from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.webrtc import CameraTrack, RtcClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

OWNER, INTRUDER = "owner-key-0123456789", "intruder-key-9876543210"
ENDED_TIMEOUT_S = 90
"""A peer's close is seen at once when its DTLS close_notify arrives, else when ICE
consent fails (about 30 s): bounded well past that."""


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--api-key", OWNER, "--api-key", INTRUDER)


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def sessions(server: ServerProcess) -> int:
    return int(server.health()["sessions"])


def delete(server: ServerProcess, location: str, key: str) -> int:
    return httpx.delete(f"{server.http_url}{location}", headers=bearer(key)).status_code


async def test_a_whip_delete_after_the_peer_closed_succeeds_for_its_owner_only(
    server: ServerProcess,
) -> None:
    ingest = await RtcClient.whip(
        server.http_url, CameraTrack(gradient_image()), model="invert", api_key=OWNER
    )
    assert ingest.location is not None
    await eventually(lambda: sessions(server) == 1, "the session to start")
    await ingest.close()
    await eventually(
        lambda: sessions(server) == 0, "the session to end with its peer", ENDED_TIMEOUT_S
    )

    assert delete(server, ingest.location, INTRUDER) == 404
    assert delete(server, "/v1/whip/0123456789ab", OWNER) == 404
    assert delete(server, ingest.location, OWNER) == 200
    assert delete(server, ingest.location, OWNER) == 200  # DELETE is idempotent
    assert delete(server, ingest.location, INTRUDER) == 404


async def test_a_whep_delete_after_the_viewer_closed_succeeds_for_its_owner_only(
    server: ServerProcess,
) -> None:
    ingest = await RtcClient.whip(
        server.http_url, CameraTrack(gradient_image()), model="invert", api_key=OWNER
    )
    assert ingest.session_id is not None and ingest.location is not None
    try:
        viewer = await RtcClient.whep(server.http_url, ingest.session_id, api_key=OWNER)
        assert viewer.location is not None
        viewer_id = viewer.location.rsplit("/", 1)[-1]
        await viewer.close()
        await eventually(
            lambda: any(f"viewer {viewer_id} left" in line for line in server.log),
            "the viewer to end with its peer",
            ENDED_TIMEOUT_S,
        )
        unknown_viewer = f"/v1/whep/{ingest.session_id}/0123456789ab"
        assert delete(server, viewer.location, INTRUDER) == 404
        assert delete(server, unknown_viewer, OWNER) == 404
        assert delete(server, viewer.location, OWNER) == 200
        assert sessions(server) == 1  # the session itself goes on
    finally:
        await ingest.close()
    await eventually(
        lambda: sessions(server) == 0, "the session to end with its peer", ENDED_TIMEOUT_S
    )
    assert delete(server, ingest.location, OWNER) == 200
    assert delete(server, ingest.location, INTRUDER) == 404
