"""A client that vanishes (TCP reset, no WebSocket close) while its frame is in the model
frees its session slot once that model step ends."""

from __future__ import annotations

import asyncio
import re

import httpx
import numpy as np
import orjson
import pytest
from raw_websocket import OP_BINARY, OP_TEXT, RawWebSocket
from support import StartServer, eventually

from frames.codecs import encode_image
from frames.samples import gradient_image, noise_image
from realtime.bench.harness import ServerProcess
from realtime.clients.websocket import FrameOutput, ServerError, StreamClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

DELAY_MS = 1000
"""One model step of the vanishing client: long enough to reset the connection inside it."""


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--max-sessions", "1")


def healthz(server: ServerProcess) -> dict[str, object]:
    body = httpx.get(f"{server.http_url}/healthz", timeout=10).json()
    assert isinstance(body, dict)
    return body


def frames_total(server: ServerProcess, outcome: str) -> float:
    """realtime_frames_total{outcome=OUTCOME} over the whole server, from /metrics."""
    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    pattern = rf'^realtime_frames_total\{{[^}}]*outcome="{outcome}"[^}}]*\}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


def session_lines(server: ServerProcess, session_id: str) -> list[str]:
    marker = f"session {session_id}: "
    return [line.split(marker, 1)[1] for line in list(server.log) if marker in line]


async def vanish_with_a_frame_in_the_model(server: ServerProcess, *, mid_message: bool) -> str:
    """Open a session, slow its model steps down, get a frame into the model, then
    reset the TCP connection (after sending part of another frame when `mid_message`).
    Returns the session id."""
    client = await asyncio.to_thread(RawWebSocket, server.port, "/v1/stream?model=invert")
    try:
        ready = await asyncio.to_thread(client.receive_json)
        assert ready["type"] == "ready", ready
        session_id = str(ready["session_id"])
        params = orjson.dumps({"type": "params", "delay_ms": DELAY_MS})
        await asyncio.to_thread(client.send, OP_TEXT, params)
        answer = await asyncio.to_thread(client.receive_json)
        assert answer == {
            "type": "params",
            "params": {
                "delay_ms": DELAY_MS,
                "output_format": "jpeg",
                "output_quality": 90,
                "similarity_filter": 0.0,
            },
        }
        before = frames_total(server, "received")
        await asyncio.to_thread(client.send, OP_BINARY, encode_image(gradient_image(), "jpeg"))
        # Decoded, offered and dispatched in one go: counted as received means it is in
        # the model, which now sleeps DELAY_MS on it.
        await eventually(lambda: frames_total(server, "received") > before, "the frame to arrive")
        if mid_message:
            second = encode_image(noise_image(seed=1), "png")
            await asyncio.to_thread(client.send, OP_BINARY, second, cut_after=len(second) // 2)
    finally:
        client.reset()
    return session_id


async def the_next_client_is_admitted_and_gets_frames(server: ServerProcess) -> None:
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        await client.update_params(output_format="png")
        image = noise_image(seed=2)
        await client.send_frame(encode_image(image, "png"))
        output = await asyncio.wait_for(client.receive(), 30)
        assert isinstance(output, FrameOutput), output
        assert output.source_frame == 1
        assert np.array_equal(output.pixels(), 255 - image)


@pytest.mark.parametrize("mid_message", [False, True], ids=["between-messages", "mid-message"])
async def test_a_reset_connection_frees_its_slot_after_the_model_step(
    server: ServerProcess, mid_message: bool
) -> None:
    await eventually(lambda: healthz(server)["sessions"] == 0, "a free slot")
    dropped = frames_total(server, "dropped")
    session_id = await vanish_with_a_frame_in_the_model(server, mid_message=mid_message)

    await eventually(lambda: healthz(server)["sessions"] == 0, "the slot to be freed", 20)
    lines = session_lines(server, session_id)
    # The transport went away with the frame in the model: DRAINING until the step
    # ended, then CLOSED. The frame that never reached the client counts as dropped
    # (a cut-off message never became a frame).
    assert lines.index("streaming -> draining") < lines.index("draining -> closed"), lines
    assert any(line.startswith("closed (1 frames in, 0 out, ") for line in lines), lines
    assert "internal error" not in "\n".join(lines)
    assert frames_total(server, "dropped") == dropped + 1

    await the_next_client_is_admitted_and_gets_frames(server)


async def test_while_the_vanished_session_drains_its_slot_stays_taken(
    server: ServerProcess,
) -> None:
    """The slot is released when the model step ends, not earlier: the worker still
    holds the session's job until then."""
    await eventually(lambda: healthz(server)["sessions"] == 0, "a free slot")
    session_id = await vanish_with_a_frame_in_the_model(server, mid_message=False)
    await eventually(
        lambda: "streaming -> draining" in session_lines(server, session_id),
        "the server to notice the reset",
    )
    try:
        client = await StreamClient.connect(server.ws_url, model="invert")
    except ServerError as refused:
        assert refused.error.code == "server_full"
        assert refused.close_code == 1013
    else:  # only if the model step had ended by then (a very slow machine)
        await client.close()
        assert "draining -> closed" in session_lines(server, session_id)
    await eventually(lambda: healthz(server)["sessions"] == 0, "the slot to be freed", 20)
    await the_next_client_is_admitted_and_gets_frames(server)
