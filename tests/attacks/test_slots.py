"""Slots cannot be squatted: a session must send its first frame soon after `ready`, the
waiting line forgets clients that left, and an address may be limited in sessions."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import orjson
import pytest
from support import StartServer, closed_with, eventually
from websockets.asyncio.client import connect

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.webrtc import CameraTrack, RtcClient
from realtime.clients.websocket import Closing, FrameOutput, ServerError, StreamClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

HANDSHAKE_S = 1.0


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--handshake-timeout", str(HANDSHAKE_S))


@pytest.fixture(scope="module")
def lined_server(start_server: StartServer) -> ServerProcess:
    """One slot and a long waiting line."""
    return start_server("--model", "invert", "--max-sessions", "1", "--queue-timeout", "120")


@pytest.fixture(scope="module")
def per_address_server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--max-sessions-per-address", "1")


class SilentCamera(CameraTrack):
    """A camera that never films: the peer connects, and sends no frame."""

    async def recv(self) -> Any:
        await asyncio.Event().wait()


async def test_a_websocket_that_sends_no_frame_is_closed_at_its_handshake_timeout(
    server: ServerProcess,
) -> None:
    async with await StreamClient.connect(server.ws_url) as client:
        await client.send_params(delay_ms=1)  # params are not a first frame
        await asyncio.wait_for(client.receive(), 30)
        closing = await asyncio.wait_for(client.receive(), 30)
        assert closing == Closing(
            "handshake_timeout", f"no first frame in {HANDSHAKE_S:g} s after ready"
        )
        assert await closed_with(client) == (1000, "handshake_timeout")
    await eventually(lambda: server.health()["sessions"] == 0, "the slot freed")


async def test_a_session_that_sent_its_first_frame_goes_on(server: ServerProcess) -> None:
    async with await StreamClient.connect(server.ws_url) as client:
        await client.send_frame(encode_image(gradient_image(), "jpeg"))
        assert isinstance(await asyncio.wait_for(client.receive(), 30), FrameOutput)
        await asyncio.sleep(2 * HANDSHAKE_S)
        await client.send_frame(encode_image(gradient_image(), "jpeg"))
        assert isinstance(await asyncio.wait_for(client.receive(), 30), FrameOutput)


async def test_a_webrtc_peer_that_connects_and_sends_no_frame_is_closed(
    server: ServerProcess,
) -> None:
    peer = await RtcClient.offer(server.http_url, camera=SilentCamera(gradient_image()))
    try:
        closing = await asyncio.wait_for(peer.receive_message(), 30)
        assert isinstance(closing, Closing) and closing.code == "handshake_timeout"
    finally:
        await peer.close()
    await eventually(lambda: server.health()["sessions"] == 0, "the slot freed")


async def holding_the_slot(server: ServerProcess) -> StreamClient:
    await eventually(lambda: server.health()["sessions"] == 0, "an empty server")
    holder = await StreamClient.connect(server.ws_url)
    await holder.send_frame(encode_image(gradient_image(), "jpeg"))
    assert isinstance(await asyncio.wait_for(holder.receive(), 30), FrameOutput)
    return holder


async def test_a_websocket_that_leaves_the_line_gives_up_its_place(
    lined_server: ServerProcess,
) -> None:
    holder = await holding_the_slot(lined_server)
    leaver = await connect(f"{lined_server.ws_url}/v1/stream")
    assert orjson.loads(await asyncio.wait_for(leaver.recv(), 30)) == {
        "type": "queued",
        "position": 1,
    }
    await leaver.close()
    positions: list[int] = []
    waiter = asyncio.create_task(
        StreamClient.connect(lined_server.ws_url, on_queued=positions.append)
    )
    try:
        await eventually(lambda: positions, "a place in line")
        assert positions == [1]  # the one that left is not ahead
        await holder.close()
        await (await asyncio.wait_for(waiter, 30)).close()
    finally:
        waiter.cancel()
        await holder.close()


async def test_an_offer_abandoned_in_line_gives_up_its_place(lined_server: ServerProcess) -> None:
    holder = await holding_the_slot(lined_server)
    in_line = waiting_offers(lined_server)
    # An HTTP client that posts an offer, then gives up on the answer and disconnects.
    offer = orjson.dumps({"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"})
    abandoned = socket.create_connection(("127.0.0.1", lined_server.port), timeout=30)
    abandoned.sendall(
        b"POST /v1/webrtc/offer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(offer)}\r\n\r\n".encode()
        + offer
    )
    positions: list[int] = []
    waiter = None
    try:
        await eventually(lambda: waiting_offers(lined_server) > in_line, "the offer in line")
        waiter = asyncio.create_task(
            StreamClient.connect(lined_server.ws_url, on_queued=positions.append)
        )
        await eventually(lambda: positions, "a place in line")
        assert positions == [2]
        abandoned.close()
        await eventually(lambda: positions == [2, 1], "moved up past the abandoned offer")
        await holder.close()
        await (await asyncio.wait_for(waiter, 30)).close()
    finally:
        abandoned.close()
        if waiter is not None:
            waiter.cancel()
        await holder.close()


def waiting_offers(server: ServerProcess) -> int:
    """How many offers joined the server's waiting line, from its log."""
    return sum("webrtc session waits in line" in line for line in list(server.log))


async def test_an_address_over_its_session_limit_is_refused(
    per_address_server: ServerProcess,
) -> None:
    async with await StreamClient.connect(per_address_server.ws_url):
        with pytest.raises(ServerError) as refused:
            await StreamClient.connect(per_address_server.ws_url)
        assert refused.value.error.code == "address_session_limit"
        assert refused.value.close_code == 1013
        offer = {"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.post(f"{per_address_server.http_url}/v1/webrtc/offer", json=offer)
        assert answer.status_code == 429
        assert answer.json()["code"] == "address_session_limit"
    await eventually(lambda: per_address_server.health()["sessions"] == 0, "the slot freed")
    async with await StreamClient.connect(per_address_server.ws_url) as again:
        await again.send_frame(encode_image(gradient_image(), "jpeg"))
        assert isinstance(await asyncio.wait_for(again.receive(), 30), FrameOutput)
