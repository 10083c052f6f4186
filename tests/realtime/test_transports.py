"""One behaviour suite, run over both transports: the same server rules whichever way
frames arrive (correct frames, params, bounded latency, slots freed on disconnect)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
import numpy as np
import pytest
from support import StartServer, eventually

from frames.codecs import encode_image
from frames.frame import Pixels
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.webrtc import CameraTrack, RtcClient
from realtime.clients.websocket import FrameOutput, ServerError, StreamClient
from session.protocol import FrameMessage

pytestmark = pytest.mark.asyncio(loop_scope="module")

TIMEOUT_S = 30


class Stream(Protocol):
    """A camera streaming one image at a fixed rate, and what comes back."""

    @property
    def frames_sent(self) -> int: ...

    async def update_params(self, **params: Any) -> dict[str, Any]: ...

    async def next_frame_message(self) -> FrameMessage: ...

    async def next_image(self) -> Pixels: ...

    async def close(self) -> None: ...


class WebSocketStream:
    def __init__(self, client: StreamClient, image: Pixels, fps: float) -> None:
        self.client = client
        self.frames_sent = 0
        self._frame = encode_image(image, "png")
        self._camera = asyncio.create_task(self._film(fps))

    async def _film(self, fps: float) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            await self.client.send_frame(self._frame)
            self.frames_sent += 1
            await asyncio.sleep(max(0.0, started + self.frames_sent / fps - loop.time()))

    async def update_params(self, **params: Any) -> dict[str, Any]:
        return await self.client.update_params(**params)

    async def _next_output(self) -> FrameOutput:
        while not isinstance(message := await self.client.receive(), FrameOutput):
            pass
        return message

    async def next_frame_message(self) -> FrameMessage:
        output = await self._next_output()
        return FrameMessage(output.source_frame, output.timings_ms, output.dropped_frames)

    async def next_image(self) -> Pixels:
        return (await self._next_output()).pixels()

    async def close(self) -> None:
        self._camera.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._camera
        await self.client.close()


class WebRtcStream:
    def __init__(self, client: RtcClient, camera: CameraTrack) -> None:
        self.client = client
        self.camera = camera

    @property
    def frames_sent(self) -> int:
        return self.camera.frames_sent

    async def update_params(self, **params: Any) -> dict[str, Any]:
        return await self.client.update_params(**params)

    async def next_frame_message(self) -> FrameMessage:
        while not isinstance(message := await self.client.receive_message(), FrameMessage):
            pass
        return message

    async def next_image(self) -> Pixels:
        return await self.client.next_frame()

    async def close(self) -> None:
        await self.client.close()


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--max-sessions", "4")


@pytest.fixture(params=["websocket", "webrtc"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def open_stream(
    transport: str, server: ServerProcess, image: Pixels, fps: float = 30
) -> AsyncIterator[Stream]:
    stream: Stream
    if transport == "websocket":
        stream = WebSocketStream(await StreamClient.connect(server.ws_url), image, fps)
    else:
        camera = CameraTrack(image, fps)
        stream = WebRtcStream(await RtcClient.offer(server.http_url, camera=camera), camera)
    try:
        yield stream
    finally:
        await stream.close()


def sessions(server: ServerProcess) -> int:
    return int(httpx.get(f"{server.http_url}/healthz").json()["sessions"])


async def test_outputs_are_the_inverted_camera(transport: str, server: ServerProcess) -> None:
    image = gradient_image(seed=11)
    async with open_stream(transport, server, image) as stream:
        for _ in range(3):
            output = await asyncio.wait_for(stream.next_image(), TIMEOUT_S)
            assert output.shape == (256, 256, 3)
            assert np.abs(output.astype(int) - (255 - image.astype(int))).mean() < 6


async def test_params_update_and_refusal(transport: str, server: ServerProcess) -> None:
    async with open_stream(transport, server, gradient_image()) as stream:
        params = await asyncio.wait_for(stream.update_params(delay_ms=3), TIMEOUT_S)
        assert params["delay_ms"] == 3
        with pytest.raises(ServerError) as refused:
            await asyncio.wait_for(stream.update_params(delay_ms=-1), TIMEOUT_S)
        assert (refused.value.error.code, refused.value.error.field) == (
            "invalid_params",
            "delay_ms",
        )
        await asyncio.wait_for(stream.next_frame_message(), TIMEOUT_S)


async def test_a_fast_camera_on_a_slow_model_stays_near_the_newest_frame(
    transport: str, server: ServerProcess
) -> None:
    async with open_stream(transport, server, gradient_image(), fps=60) as stream:
        await asyncio.wait_for(stream.update_params(delay_ms=100), TIMEOUT_S)
        lags: list[int] = []
        last = FrameMessage(0, {}, 0)
        loop = asyncio.get_running_loop()
        until = loop.time() + 2.5
        while loop.time() < until:
            last = await asyncio.wait_for(stream.next_frame_message(), TIMEOUT_S)
            lags.append(stream.frames_sent - last.source_frame)
    # 60 fps into a 10 fps model: a queue would fall ~125 frames behind by the end.
    assert max(lags[3:]) < 40, lags
    assert last.dropped_frames > stream.frames_sent / 3


async def test_closing_frees_the_session_slot(transport: str, server: ServerProcess) -> None:
    # The server frees a slot just after a client's close returns: start from none taken.
    await eventually(lambda: sessions(server) == 0, "earlier sessions to end")
    async with open_stream(transport, server, gradient_image()) as stream:
        await asyncio.wait_for(stream.next_frame_message(), TIMEOUT_S)
        assert sessions(server) == 1
    await eventually(lambda: sessions(server) == 0, "the slot to be freed")
