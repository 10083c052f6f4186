"""WebRTC against a real `realtime serve`: offer/answer, WHIP, WHEP and the control channel."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from support import StartServer, eventually

from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.webrtc import CameraTrack, RtcClient
from realtime.clients.websocket import ServerError
from session.protocol import FrameMessage

pytestmark = pytest.mark.asyncio(loop_scope="module")

FRAME_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--model", "tiny", "--max-sessions", "3")


def sessions(server: ServerProcess) -> int:
    return int(httpx.get(f"{server.http_url}/healthz").json()["sessions"])


def inverse_error(output: np.ndarray, image: np.ndarray) -> float:
    return float(np.abs(output.astype(int) - (255 - image.astype(int))).mean())


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_a_peer_gets_its_camera_inverted_and_the_control_channel(
    server: ServerProcess, codec: str
) -> None:
    image = gradient_image()
    client = await RtcClient.offer(
        server.http_url, camera=CameraTrack(image), model="invert", video_codec=codec
    )
    try:
        assert client.video_codec == codec
        assert client.ready is not None
        assert client.ready.model == "invert"
        assert client.ready.session_id == client.session_id
        for _ in range(5):
            output = await asyncio.wait_for(client.next_frame(), FRAME_TIMEOUT_S)
            assert output.shape == (256, 256, 3)
            assert inverse_error(output, image) < 6  # VP8 at its default bitrate
        message = await asyncio.wait_for(client.receive_message(), FRAME_TIMEOUT_S)
        assert isinstance(message, FrameMessage)
        assert set(message.timings_ms) == {"queue", "decode", "control", "model", "encode"}
    finally:
        await client.close()
    await eventually(lambda: sessions(server) == 0, "the session to end")


async def test_offer_params_and_errors(server: ServerProcess) -> None:
    camera = CameraTrack(gradient_image())
    client = await RtcClient.offer(
        server.http_url, camera=camera, model="invert", params={"delay_ms": 7}
    )
    try:
        assert client.ready is not None and client.ready.params["delay_ms"] == 7
    finally:
        await client.close()

    offers: list[tuple[dict[str, Any], int, str, str]] = [
        ({"model": "nope"}, 404, "unknown_model", "model"),
        ({"model": "invert", "params": {"prompt": "x"}}, 400, "invalid_params", "prompt"),
        ({"model": "invert", "params": {"delay_ms": "slow"}}, 400, "invalid_params", "delay_ms"),
    ]
    for offer, status, code, field in offers:
        with pytest.raises(ServerError) as refused:
            await RtcClient.offer(server.http_url, camera=CameraTrack(gradient_image()), **offer)
        assert (refused.value.status, refused.value.error.code) == (status, code)
        assert refused.value.error.field == field

    answer = httpx.post(
        f"{server.http_url}/v1/webrtc/offer", json={"type": "offer", "sdp": "v=0 garbage"}
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "bad_offer"
    not_json = httpx.post(
        f"{server.http_url}/v1/webrtc/offer",
        content=b"{",
        headers={"Content-Type": "application/json"},
    )
    assert (not_json.status_code, not_json.json()["code"]) == (400, "bad_message")
    await eventually(lambda: sessions(server) == 0, "refused sessions to be released")


async def test_a_full_server_answers_503_with_retry_after(server: ServerProcess) -> None:
    clients = [
        await RtcClient.offer(server.http_url, camera=CameraTrack(gradient_image()), model="invert")
        for _ in range(3)
    ]
    try:
        with pytest.raises(ServerError) as refused:
            await RtcClient.offer(server.http_url, camera=CameraTrack(gradient_image()))
        assert refused.value.status == 503
        assert refused.value.error.code == "server_full"
        full = httpx.post(f"{server.http_url}/v1/whip", content=b"v=0", headers=SDP)
        assert (full.status_code, full.headers["Retry-After"]) == (503, "5")
    finally:
        for client in clients:
            await client.close()
    await eventually(lambda: sessions(server) == 0, "the sessions to end")


SDP = {"Content-Type": "application/sdp"}


async def test_whip_ingest_with_whep_viewers_and_delete(server: ServerProcess) -> None:
    image = gradient_image(seed=5)
    ingest = await RtcClient.whip(server.http_url, CameraTrack(image), model="invert")
    assert ingest.location == f"/v1/whip/{ingest.session_id}"
    assert ingest.session_id is not None
    viewers = [await RtcClient.whep(server.http_url, ingest.session_id) for _ in range(2)]
    try:
        for viewer in viewers:
            assert viewer.location is not None
            assert viewer.location.startswith(f"/v1/whep/{ingest.session_id}/")
            output = await asyncio.wait_for(viewer.next_frame(), FRAME_TIMEOUT_S)
            assert inverse_error(output, image) < 6
        assert sessions(server) == 1  # viewers watch; they hold no session slot

        gone = httpx.delete(f"{server.http_url}{viewers[1].location}")
        assert gone.status_code == 200
        # Ended already: a second DELETE succeeds too (RFC 9725 teardown; see test_late_delete)
        assert httpx.delete(f"{server.http_url}{viewers[1].location}").status_code == 200

        assert httpx.delete(f"{server.http_url}{ingest.location}").status_code == 200
        await eventually(lambda: sessions(server) == 0, "DELETE to end the session")
        assert httpx.delete(f"{server.http_url}{ingest.location}").status_code == 200
    finally:
        for client in (ingest, *viewers):
            await client.close()


async def test_whip_and_whep_answer_other_methods_as_rfc_9725_says(server: ServerProcess) -> None:
    url = server.http_url
    assert httpx.get(f"{url}/v1/whip").status_code == 405
    options = httpx.options(f"{url}/v1/whip")
    assert options.status_code == 204
    assert options.headers["Accept-Post"] == "application/sdp"
    assert httpx.post(f"{url}/v1/whip", json={"sdp": "x"}).status_code == 415
    assert httpx.patch(f"{url}/v1/whip/abc", content=b"a=candidate").status_code == 405
    assert httpx.post(
        f"{url}/v1/whep/no-such-session", content=b"v=0", headers=SDP
    ).status_code == (404)
    bad = httpx.post(f"{url}/v1/whip?model=invert", content=b"not sdp", headers=SDP)
    assert (bad.status_code, bad.json()["code"]) == (400, "bad_offer")
    await eventually(lambda: sessions(server) == 0, "refused sessions to be released")


async def test_a_params_change_on_the_control_channel_changes_the_output(
    server: ServerProcess,
) -> None:
    client = await RtcClient.offer(
        server.http_url, camera=CameraTrack(gradient_image(), fps=15), model="tiny"
    )

    async def average_frame() -> npt.NDArray[np.float64]:
        frames = [await asyncio.wait_for(client.next_frame(), FRAME_TIMEOUT_S) for _ in range(3)]
        average: npt.NDArray[np.float64] = np.mean(frames, axis=0)
        return average

    try:
        for _ in range(8):  # the encoder's first frames, at a low quality
            await asyncio.wait_for(client.next_frame(), FRAME_TIMEOUT_S)
        before = await average_frame()
        params = await client.update_params(prompt="a neon city at night", seed=99)
        assert params["prompt"] == "a neon city at night"
        # The frames queued meanwhile (more on a busy machine) were made before it.
        changes: list[float] = []
        while len(changes) < 20 and max(changes, default=0.0) <= 3:
            changes.append(float(np.abs(await average_frame() - before).mean()))
    finally:
        await client.close()
    assert max(changes) > 3, changes
