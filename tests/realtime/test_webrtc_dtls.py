"""DTLS with peers whose certificate is RSA (GStreamer's webrtcbin, and others): aiortc
as a DTLS client offers ECDHE-ECDSA suites only, so the server answers as the DTLS server."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import httpx
import numpy as np
import pytest
from aiortc import RTCCertificate, RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import generate_certificate
from cryptography.hazmat.primitives.asymmetric import rsa
from support import StartServer, eventually

from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients import webrtc
from realtime.clients.webrtc import CameraTrack, RtcClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

FRAME_TIMEOUT_S = 30


class RsaPeerConnection(RTCPeerConnection):
    """An aiortc peer with an RSA certificate, as GStreamer's webrtcbin has."""

    def __init__(self, configuration: RTCConfiguration | None = None) -> None:
        super().__init__(configuration)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        # aiortc's hints say EC keys; pyOpenSSL and its certificate builder take RSA too.
        certificate = RTCCertificate(key=cast(Any, key), cert=generate_certificate(cast(Any, key)))
        self._RTCPeerConnection__certificates = [certificate]  # read by each new transport


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert")


@pytest.fixture
def rsa_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    """RtcClient's peer connections, made with an RSA certificate."""
    monkeypatch.setattr(webrtc, "RTCPeerConnection", RsaPeerConnection)


def inverse_error(output: np.ndarray, image: np.ndarray) -> float:
    return float(np.abs(output.astype(int) - (255 - image.astype(int))).mean())


def sessions(server: ServerProcess) -> int:
    return int(httpx.get(f"{server.http_url}/healthz").json()["sessions"])


async def assert_inverted(client: RtcClient, image: np.ndarray) -> None:
    for _ in range(3):
        output = await asyncio.wait_for(client.next_frame(), FRAME_TIMEOUT_S)
        assert inverse_error(output, image) < 6


@pytest.mark.usefixtures("rsa_peers")
async def test_an_rsa_certificate_peer_offers_and_gets_its_camera_inverted(
    server: ServerProcess,
) -> None:
    image = gradient_image(seed=7)
    client = await asyncio.wait_for(
        RtcClient.offer(server.http_url, camera=CameraTrack(image), model="invert"),
        FRAME_TIMEOUT_S,  # `ready` comes over the data channel: DTLS must have connected
    )
    try:
        assert "a=setup:passive" in client.pc.remoteDescription.sdp
        await assert_inverted(client, image)
    finally:
        await client.close()
    await eventually(lambda: sessions(server) == 0, "the session to end")


@pytest.mark.usefixtures("rsa_peers")
async def test_an_rsa_certificate_peer_publishes_by_whip_and_plays_by_whep(
    server: ServerProcess,
) -> None:
    image = gradient_image(seed=8)
    ingest = await RtcClient.whip(server.http_url, CameraTrack(image), model="invert")
    assert ingest.session_id is not None
    viewer = await RtcClient.whep(server.http_url, ingest.session_id)
    try:
        await assert_inverted(viewer, image)
    finally:
        await viewer.close()
        await ingest.close()
    await eventually(lambda: sessions(server) == 0, "the session to end")


async def test_a_peer_that_chose_to_be_the_dtls_server_keeps_that_role(
    server: ServerProcess,
) -> None:
    """An offer with `a=setup:passive` gets `a=setup:active`: the server is its client."""
    pc = RTCPeerConnection()
    pc.addTransceiver(CameraTrack(gradient_image()), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp.replace("a=setup:actpass", "a=setup:passive")
    try:
        answer = httpx.post(
            f"{server.http_url}/v1/whip?model=invert",
            content=offer.encode(),
            headers={"Content-Type": "application/sdp"},
        )
        assert answer.status_code == 201, answer.text
        assert "a=setup:active" in answer.text
        assert "a=setup:passive" not in answer.text
        httpx.delete(f"{server.http_url}{answer.headers['Location']}")
    finally:
        await pc.close()
