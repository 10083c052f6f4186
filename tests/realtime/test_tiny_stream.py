"""The CPU default model, `tiny`, through a real `realtime serve` with no --model."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from support import StartServer

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.webrtc import RtcClient
from realtime.clients.websocket import FrameOutput, ServerError, StreamClient
from session.protocol import FrameMessage

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--device", "cpu")


async def generate(client: StreamClient, frame: bytes) -> FrameOutput:
    await client.send_frame(frame)
    output = await asyncio.wait_for(client.receive(), 60)
    assert isinstance(output, FrameOutput), output
    return output


async def test_tiny_is_the_default_and_generates_frames(server: ServerProcess) -> None:
    frame = encode_image(gradient_image(640, 480), "jpeg")
    async with await StreamClient.connect(server.ws_url) as client:
        assert client.ready.model == "tiny"
        assert (client.ready.width, client.ready.height) == (256, 256)
        assert {"prompt", "strength", "steps", "seed", "guidance_scale"} <= set(client.ready.params)
        await client.update_params(output_format="png")
        first = await generate(client, frame)
        assert first.pixels().shape == (256, 256, 3)
        assert first.timings_ms["model"] > 0

        # The session's noise is fixed by its seed: the same input gives the same output.
        assert (await generate(client, frame)).image == first.image

        await client.update_params(prompt="a completely different prompt")
        by_prompt = await generate(client, frame)
        await client.update_params(prompt=client.ready.params["prompt"], strength=0.9)
        by_strength = await generate(client, frame)
        await client.update_params(strength=client.ready.params["strength"], seed=1234)
        by_seed = await generate(client, frame)
    for changed in (by_prompt, by_strength, by_seed):
        difference = np.abs(changed.pixels().astype(int) - first.pixels().astype(int))
        assert difference.mean() > 1.0


async def test_sessions_keep_their_own_params(server: ServerProcess) -> None:
    frame = encode_image(gradient_image(), "jpeg")
    async with (
        await StreamClient.connect(server.ws_url) as fox,
        await StreamClient.connect(server.ws_url) as owl,
    ):
        await fox.update_params(prompt="a fox", output_format="png")
        await owl.update_params(prompt="an owl", output_format="png")
        fox_alone = await generate(fox, frame)
        owl_alone = await generate(owl, frame)
        # Both in the model at once, possibly in one batch: each keeps its own prompt.
        await asyncio.gather(fox.send_frame(frame), owl.send_frame(frame))
        fox_again, owl_again = await asyncio.gather(fox.receive(), owl.receive())
    assert isinstance(fox_again, FrameOutput) and isinstance(owl_again, FrameOutput)
    # A batch rounds differently from a single frame: at most one level apart.
    assert levels_apart(fox_again, fox_alone) <= 1
    assert levels_apart(owl_again, owl_alone) <= 1
    assert levels_apart(fox_alone, owl_alone) > 1


async def next_frame_message(peer: RtcClient) -> FrameMessage:
    while not isinstance(
        message := await asyncio.wait_for(peer.receive_message(), 60), FrameMessage
    ):
        pass
    return message


def levels_apart(one: FrameOutput, other: FrameOutput) -> int:
    return int(np.abs(one.pixels().astype(int) - other.pixels().astype(int)).max())


async def test_type_to_image_over_websocket_makes_an_image_per_prompt(
    server: ServerProcess,
) -> None:
    async with await StreamClient.connect(server.ws_url, text_input=True) as client:
        at_ready = await asyncio.wait_for(client.receive(), 60)
        assert isinstance(at_ready, FrameOutput) and at_ready.source_frame == 1
        await client.send_params(prompt="a red fox in the snow")
        while not isinstance(message := await asyncio.wait_for(client.receive(), 60), FrameOutput):
            pass
        assert message.source_frame == 2
        assert message.pixels().shape == (256, 256, 3)
        assert message.image != at_ready.image


async def test_type_to_image_over_webrtc_when_the_peer_sends_no_camera(
    server: ServerProcess,
) -> None:
    peer = await RtcClient.offer(server.http_url, camera=None)
    try:
        first = await asyncio.wait_for(peer.next_frame(), 60)  # the image for the defaults
        await peer.send_params(prompt="an owl at dusk, oil on canvas")
        message = await next_frame_message(peer)
        if message.source_frame == 1:  # the metadata of the image at ready came first
            message = await next_frame_message(peer)
        assert message.source_frame == 2
        second = await asyncio.wait_for(peer.next_frame(), 60)
        assert first.shape == second.shape == (256, 256, 3)
    finally:
        await peer.close()


async def test_type_to_image_needs_a_model_that_makes_images_from_text(
    start_server: StartServer,
) -> None:
    server = start_server("--model", "invert")
    with pytest.raises(ServerError) as refused:
        await StreamClient.connect(server.ws_url, text_input=True)
    assert refused.value.error.code == "needs_frames"
    assert refused.value.error.field == "input"
    assert refused.value.close_code == 1008
