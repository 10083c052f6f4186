"""SIGTERM on a real `realtime serve`: sessions hear `closing`, get the frame that was in
the model, are closed with 1001, and the process exits 0."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from support import running_server
from websockets.exceptions import ConnectionClosed

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.clients.webrtc import CameraTrack, RtcClient
from realtime.clients.websocket import Closing, FrameOutput, StreamClient


@pytest.mark.asyncio
async def test_sigterm_drains_sessions_and_exits_0(model_cache: Path) -> None:
    with running_server(
        "--model", "invert", "--shutdown-timeout", "10", cache=model_cache
    ) as server:
        websocket = await StreamClient.connect(server.ws_url)
        peer = await RtcClient.offer(server.http_url, camera=CameraTrack(gradient_image()))
        await websocket.update_params(delay_ms=1000)
        await websocket.send_frame(encode_image(gradient_image(), "jpeg"))
        await asyncio.sleep(0.3)  # frame 1 is now in its 1 s model step

        server.process.send_signal(signal.SIGTERM)

        closing = await asyncio.wait_for(websocket.receive(), 30)
        assert isinstance(closing, Closing) and closing.code == "shutting_down"
        in_flight = await asyncio.wait_for(websocket.receive(), 30)
        assert isinstance(in_flight, FrameOutput) and in_flight.source_frame == 1
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(websocket.receive(), 30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001

        while not isinstance(
            message := await asyncio.wait_for(peer.receive_message(), 30), Closing
        ):
            pass
        assert (message.code, message.message) == (
            "shutting_down",
            "the server is shutting down",
        )
        await peer.close()

        exit_code = await asyncio.to_thread(server.process.wait, 30)
        assert exit_code == 0
        log = "\n".join(server.log)
        assert "draining 2 session(s)" in log
        assert "did not finish" not in log
