"""Per-session limits and the waiting line, against real `realtime serve` processes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from support import StartServer, closed_with, eventually

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.webrtc import CameraTrack, RtcClient
from realtime.clients.websocket import Closing, ErrorMessage, FrameOutput, ServerError, StreamClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

IDLE_S = 1.5
DURATION_S = 5.0


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server(
        "--model", "invert",
        "--idle-timeout", str(IDLE_S),
        "--max-session-duration", str(DURATION_S),
        "--max-messages-per-s", "5",
        "--max-image-size", "300",
    )  # fmt: skip


@pytest.fixture(scope="module")
def one_slot_server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--max-sessions", "1", "--queue-timeout", "3")


async def test_an_idle_session_is_told_and_closed(server: ServerProcess) -> None:
    async with await StreamClient.connect(server.ws_url) as client:
        await client.send_frame(encode_image(gradient_image(), "jpeg"))
        assert isinstance(await asyncio.wait_for(client.receive(), 30), FrameOutput)
        closing = await asyncio.wait_for(client.receive(), 30)  # after IDLE_S of silence
        assert closing == Closing("idle_timeout", f"no frame and no params for {IDLE_S:g} s")
        assert await closed_with(client) == (1000, "idle_timeout")


async def test_a_session_is_closed_at_its_longest_duration_over_webrtc(
    server: ServerProcess,
) -> None:
    # A streaming camera keeps it from being idle; the duration limit ends it anyway.
    peer = await RtcClient.offer(server.http_url, camera=CameraTrack(gradient_image()))
    try:
        while not isinstance(
            message := await asyncio.wait_for(peer.receive_message(), 30), Closing
        ):
            pass
        assert message.code == "session_time_limit"
        assert "at most 5 s" in message.message
    finally:
        await peer.close()
    await eventually(lambda: server.health()["sessions"] == 0, "the slot freed")


async def test_control_messages_over_the_rate_are_refused_and_the_session_goes_on(
    server: ServerProcess,
) -> None:
    async with await StreamClient.connect(server.ws_url) as client:
        for delay in range(12):
            await client.send_params(delay_ms=delay)
        replies = [await asyncio.wait_for(client.receive(), 30) for _ in range(12)]
        refused = [r for r in replies if isinstance(r, ErrorMessage)]
        assert refused and all(r.code == "rate_limited" for r in refused)
        assert len(refused) >= 12 - 5 - 1  # a burst of 5, and maybe one more token
        await asyncio.sleep(0.5)
        assert (await client.update_params(delay_ms=0))["delay_ms"] == 0
        await client.send_frame(encode_image(gradient_image(), "jpeg"))
        assert isinstance(await asyncio.wait_for(client.receive(), 30), FrameOutput)


async def test_an_image_over_the_size_limit_is_a_bad_frame(server: ServerProcess) -> None:
    async with await StreamClient.connect(server.ws_url) as client:
        big = np.zeros((64, 301, 3), np.uint8)
        await client.send_frame(encode_image(big, "png"))
        error = await asyncio.wait_for(client.receive(), 30)
        assert isinstance(error, ErrorMessage)
        assert (error.code, error.source_frame) == ("bad_frame", 1)
        assert "exceeds the limit of 300x300" in error.message
        await client.send_frame(encode_image(gradient_image(300, 300), "png"))
        output = await asyncio.wait_for(client.receive(), 30)
        assert isinstance(output, FrameOutput) and output.source_frame == 2


async def test_a_full_server_lets_sessions_wait_in_line_first_come_first_served(
    one_slot_server: ServerProcess,
) -> None:
    await eventually(lambda: one_slot_server.health()["sessions"] == 0, "an empty server")
    url = one_slot_server.ws_url
    holder = await StreamClient.connect(url)
    second_positions: list[int] = []
    third_positions: list[int] = []
    second = asyncio.create_task(StreamClient.connect(url, on_queued=second_positions.append))
    await eventually(lambda: second_positions == [1], "the second in line at 1")
    third = asyncio.create_task(StreamClient.connect(url, on_queued=third_positions.append))
    await eventually(lambda: third_positions == [2], "the third in line at 2")

    await holder.close()
    admitted = await asyncio.wait_for(second, 30)
    await eventually(lambda: third_positions == [2, 1], "the third moved up")
    assert not third.done()
    await admitted.close()
    last = await asyncio.wait_for(third, 30)
    await last.send_frame(encode_image(gradient_image(), "jpeg"))
    assert isinstance(await asyncio.wait_for(last.receive(), 30), FrameOutput)
    await last.close()


async def test_waiting_in_line_ends_with_server_full_after_the_queue_timeout(
    one_slot_server: ServerProcess,
) -> None:
    await eventually(lambda: one_slot_server.health()["sessions"] == 0, "an empty server")
    async with await StreamClient.connect(one_slot_server.ws_url):
        positions: list[int] = []
        with pytest.raises(ServerError) as refused:
            await StreamClient.connect(one_slot_server.ws_url, on_queued=positions.append)
        assert positions == [1]
        assert refused.value.error.code == "server_full"
        assert "3 s in the queue" in refused.value.error.message
        assert refused.value.close_code == 1013
