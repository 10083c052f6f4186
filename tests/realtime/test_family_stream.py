"""Each diffusion family served from a folder by a real `realtime serve`, as a user would
serve a hub id: detected from model_index.json, loaded with the tiny VAE, streamed."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from family_builders import FamilyFolders
from support import StartServer

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.websocket import FrameOutput, StreamClient
from session.protocol import ParamsMessage

pytestmark = pytest.mark.asyncio(loop_scope="module")

FAMILIES = ("sd", "sdxl", "lcm")


@pytest.fixture(scope="module")
def server(start_server: StartServer, family_folders: FamilyFolders) -> ServerProcess:
    models = [arg for name in FAMILIES for arg in ("--model", str(getattr(family_folders, name)))]
    return start_server(*models, "--vae", str(family_folders.tiny_vae))


async def output_of(client: StreamClient, image: bytes | None = None) -> FrameOutput:
    if image is not None:
        await client.send_frame(image)
    while not isinstance(message := await asyncio.wait_for(client.receive(), 60), FrameOutput):
        assert isinstance(message, ParamsMessage), message
    return message


@pytest.mark.parametrize("family", FAMILIES)
async def test_frames_stream_deterministically_and_follow_the_prompt(
    server: ServerProcess, family_folders: FamilyFolders, family: str
) -> None:
    model = str(getattr(family_folders, family))
    async with await StreamClient.connect(server.ws_url, model=model) as client:
        assert (client.ready.width, client.ready.height) == (512, 512)
        await client.update_params(output_format="png", seed=7)
        frame = encode_image(gradient_image(512, 512), "png")
        first = (await output_of(client, frame)).pixels()
        assert first.shape == (512, 512, 3)
        again = (await output_of(client, frame)).pixels()
        assert np.array_equal(first, again)  # the seed fixes the noise
        await client.update_params(prompt="a completely different prompt, in neon")
        other = (await output_of(client, frame)).pixels()
        assert not np.array_equal(other, first)  # tiny random weights: a small change


@pytest.mark.parametrize("family", FAMILIES)
async def test_a_type_to_image_session_gets_an_image_per_prompt(
    server: ServerProcess, family_folders: FamilyFolders, family: str
) -> None:
    model = str(getattr(family_folders, family))
    async with await StreamClient.connect(server.ws_url, model=model, text_input=True) as client:
        at_ready = await output_of(client)  # from the default params
        assert at_ready.source_frame == 1 and at_ready.pixels().shape == (512, 512, 3)
        await client.send_params(prompt="a lighthouse", output_format="png")
        first = await output_of(client)
        assert first.source_frame == 2
        await client.send_params(prompt="a lighthouse at night")
        second = await output_of(client)
        assert second.source_frame == 3
        assert not np.array_equal(first.pixels(), second.pixels())
