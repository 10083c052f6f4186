"""Offers whose codecs the server cannot use, on every signalling endpoint: a
`400` `bad_offer` that names the codecs the server takes, never a 500.

Each offer is a real aiortc offer whose video m-line is rewritten to the codec set
under test (payload types, rtpmap, fmtp), or one with no video m-line at all.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from aiortc import RTCPeerConnection
from support import StartServer

from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.webrtc import CameraTrack, RtcClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

SDP = {"Content-Type": "application/sdp"}
H264_BASELINE = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
VIDEO_CODECS: dict[str, list[tuple[str, str | None]] | None] = {
    # kind of offer: its video m-line's (rtpmap, fmtp) list; None: no video m-line
    "vp8-only": [("VP8/90000", None)],
    "h264-constrained-baseline": [("H264/90000", H264_BASELINE)],
    "h264-baseline": [("H264/90000", "packetization-mode=1;profile-level-id=42001f")],
    "h264-without-fmtp": [("H264/90000", None)],
    "h264-high": [("H264/90000", "packetization-mode=1;profile-level-id=640c1f")],
    "av1-only": [("AV1/90000", None)],
    "audio-only": None,
    "data-channel-only": None,
}
USABLE = {"vp8-only", "h264-constrained-baseline", "h264-baseline"}


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--max-sessions", "8")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def watched(server: ServerProcess) -> AsyncIterator[str]:
    """A live session for the WHEP offers to watch."""
    ingest = await RtcClient.whip(server.http_url, CameraTrack(gradient_image()), model="invert")
    assert ingest.session_id is not None
    try:
        yield ingest.session_id
    finally:
        await ingest.close()


async def offer(kind: str, direction: str) -> str:
    """A real aiortc offer, its video m-line rewritten to the codecs of `kind`."""
    pc = RTCPeerConnection()
    try:
        if kind == "audio-only":
            pc.addTransceiver("audio", direction="sendrecv")
        elif kind != "data-channel-only":
            pc.addTransceiver("video", direction=direction)
        pc.createDataChannel("control")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = str(pc.localDescription.sdp)
    finally:
        await pc.close()
    codecs = VIDEO_CODECS[kind]
    return sdp if codecs is None else with_video_codecs(sdp, codecs)


def with_video_codecs(sdp: str, codecs: list[tuple[str, str | None]]) -> str:
    head, *sections = sdp.split("\r\nm=")
    out = [head]
    for section in sections:
        if section.startswith("video "):
            lines = section.split("\r\n")
            payloads = [str(96 + i) for i in range(len(codecs))]
            m_line = " ".join(lines[0].split(" ")[:3] + payloads)
            kept = [line for line in lines[1:] if not re.match(r"a=(rtpmap|fmtp|rtcp-fb):", line)]
            for payload, (rtpmap, fmtp) in zip(payloads, codecs, strict=True):
                kept.append(f"a=rtpmap:{payload} {rtpmap}")
                if fmtp is not None:
                    kept.append(f"a=fmtp:{payload} {fmtp}")
            section = "\r\n".join([m_line, *[line for line in kept if line]]) + "\r\n"
            section = section.rstrip("\r\n")
        out.append(section)
    return "\r\nm=".join(out) + "\r\n"


async def post(server: ServerProcess, endpoint: str, sdp: str, watched: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        if endpoint == "offer":
            return await http.post(
                "/v1/webrtc/offer", json={"type": "offer", "sdp": sdp, "model": "invert"}
            )
        path = "/v1/whip?model=invert" if endpoint == "whip" else f"/v1/whep/{watched}"
        return await http.post(path, content=sdp.encode(), headers=SDP)


async def end(server: ServerProcess, endpoint: str, response: httpx.Response) -> None:
    """Ends what a usable offer opened: the test's peer never connects."""
    if endpoint == "offer":
        location = f"/v1/whip/{response.json()['session_id']}"
    else:
        location = response.headers["location"]
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        assert (await http.delete(location)).status_code == 200


DIRECTIONS = {"offer": "sendrecv", "whip": "sendonly", "whep": "recvonly"}


@pytest.mark.parametrize("endpoint", ["offer", "whip", "whep"])
@pytest.mark.parametrize("kind", VIDEO_CODECS)
async def test_offers_the_server_cannot_use_are_bad_offers_naming_its_codecs(
    server: ServerProcess, watched: str, endpoint: str, kind: str
) -> None:
    sdp = await offer(kind, DIRECTIONS[endpoint])
    response = await post(server, endpoint, sdp, watched)
    if kind in USABLE:
        assert response.status_code == (200 if endpoint == "offer" else 201), response.text
        answer = response.json()["sdp"] if endpoint == "offer" else response.text
        assert ("H264" if kind.startswith("h264") else "VP8") in answer
        await end(server, endpoint, response)
        return
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["code"], body["field"]) == ("bad_offer", "sdp")
    assert "VP8" in body["message"] and "H264" in body["message"], body["message"]


async def test_the_server_still_serves_after_the_bad_offers(server: ServerProcess) -> None:
    client = await RtcClient.whip(server.http_url, CameraTrack(gradient_image()), model="invert")
    await client.close()
