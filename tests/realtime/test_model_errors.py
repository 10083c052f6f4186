"""A model that raises: the session is told which frame failed, and goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest
from support import eventually, input_pixels, serve_app

from frames.codecs import encode_image
from frames.frame import Pixels
from frames.samples import gradient_image
from models.base import ModelEntry, ModelInfo, ModelInput
from models.params import ParamSpec
from realtime.clients.websocket import ErrorMessage, FrameOutput, StreamClient
from realtime.server.app import create_app
from realtime.server.config import ServerConfig

FLAKY = ModelInfo(
    "flaky",
    "raises when asked to",
    "effect",
    64,
    64,
    (ParamSpec("fail", int, 0, "1 makes the next frames fail", minimum=0, maximum=1),),
)


class Flaky:
    info = FLAKY

    def warmup(self) -> None:
        pass

    def run(self, batch: Sequence[ModelInput]) -> list[Pixels]:
        if any(item.params["fail"] for item in batch):
            raise RuntimeError("simulated model failure")
        return [255 - input_pixels(item) for item in batch]


@pytest.mark.asyncio
async def test_a_model_error_names_the_frame_and_the_session_goes_on() -> None:
    app = create_app(
        ServerConfig(models=("flaky",), devices=("cpu",)),
        registry={"flaky": ModelEntry(FLAKY, lambda device: Flaky())},
    )
    frame = encode_image(gradient_image(64, 64), "jpeg")
    with serve_app(app) as url:
        await eventually(lambda: httpx.get(f"{url}/healthz").status_code == 200, "healthz")
        async with await StreamClient.connect(url.replace("http", "ws")) as client:
            await client.update_params(fail=1)
            await client.send_frame(frame)
            error = await asyncio.wait_for(client.receive(), 30)
            assert error == ErrorMessage(
                "model_error", "RuntimeError: simulated model failure", None, 1
            )
            await client.update_params(fail=0)
            await client.send_frame(frame)
            output = await asyncio.wait_for(client.receive(), 30)
            assert isinstance(output, FrameOutput)
            assert output.source_frame == 2
