"""The native WebSocket protocol against a real `realtime serve` process running `invert`."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import orjson
import pytest
from support import StartServer, eventually
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from frames.codecs import encode_image
from frames.geometry import fit
from frames.samples import gradient_image, noise_image
from models.params import ParamValue
from realtime.bench.harness import ServerProcess
from realtime.clients.websocket import ErrorMessage, FrameOutput, ServerError, StreamClient

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--max-sessions", "4", "--max-message-mb", "1")


@pytest.fixture(scope="module")
def one_slot_server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--max-sessions", "1")


async def next_frame(client: StreamClient) -> FrameOutput:
    message = await asyncio.wait_for(client.receive(), 30)
    assert isinstance(message, FrameOutput), message
    return message


async def test_ready_message_describes_the_session(server: ServerProcess) -> None:
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        assert client.ready.model == "invert"
        assert (client.ready.width, client.ready.height) == (256, 256)
        assert client.ready.params == {
            "delay_ms": 0,
            "output_format": "jpeg",
            "output_quality": 90,
            "similarity_filter": 0.0,
        }
        assert len(client.ready.session_id) == 12
    session_id = client.ready.session_id
    await eventually(lambda: any(session_id in line for line in server.log), "a log line")


async def test_the_default_model_is_the_first_served(server: ServerProcess) -> None:
    async with await StreamClient.connect(server.ws_url) as client:
        assert client.ready.model == "invert"


async def test_inverts_frames_within_jpeg_tolerance(server: ServerProcess) -> None:
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        image = gradient_image()
        await client.send_frame(encode_image(image, "jpeg", 95))
        output = await next_frame(client)
        assert output.source_frame == 1
        assert output.dropped_frames == 0
        assert set(output.timings_ms) == {"queue", "decode", "control", "model", "encode"}
        difference = np.abs(output.pixels().astype(int) - (255 - image.astype(int)))
        assert difference.mean() < 2.0
        assert np.percentile(difference, 99) < 12


async def test_png_in_png_out_is_exact(server: ServerProcess) -> None:
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        assert (await client.update_params(output_format="png"))["output_format"] == "png"
        image = noise_image()
        await client.send_frame(encode_image(image, "png"))
        output = await next_frame(client)
        assert output.image.startswith(b"\x89PNG")
        assert np.array_equal(output.pixels(), 255 - image)


async def test_webp_input_and_output(server: ServerProcess) -> None:
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        await client.update_params(output_format="webp", output_quality=100)
        await client.send_frame(encode_image(gradient_image(), "webp", 100))
        output = await next_frame(client)
        assert output.image[8:12] == b"WEBP"
        assert output.pixels().shape == (256, 256, 3)


async def test_frames_of_another_size_are_cropped_and_resized(server: ServerProcess) -> None:
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        await client.update_params(output_format="png")
        wide = gradient_image(640, 360, seed=3)
        await client.send_frame(encode_image(wide, "png"))
        output = await next_frame(client)
        assert np.array_equal(output.pixels(), 255 - fit(wide, 256, 256))


async def test_params_round_trip_and_bad_params_change_nothing(server: ServerProcess) -> None:
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        params = await client.update_params(delay_ms=5, output_quality=80)
        assert params == {
            "delay_ms": 5,
            "output_format": "jpeg",
            "output_quality": 80,
            "similarity_filter": 0.0,
        }
        invalid: list[tuple[dict[str, ParamValue], str]] = [
            ({"prompt": "a fox"}, "prompt"),
            ({"delay_ms": "slow"}, "delay_ms"),
            ({"output_quality": 101}, "output_quality"),
        ]
        for bad, field in invalid:
            with pytest.raises(ServerError) as refused:
                await client.update_params(**bad)
            assert refused.value.error.code == "invalid_params"
            assert refused.value.error.field == field
            assert field in refused.value.error.message
        assert await client.update_params() == params
        await client.send_frame(encode_image(gradient_image(), "jpeg"))
        assert (await next_frame(client)).source_frame == 1


async def test_bad_frames_and_bad_json_get_errors_and_the_session_goes_on(
    server: ServerProcess,
) -> None:
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        await client.send_frame(b"definitely not an image")
        error = await client.receive()
        assert isinstance(error, ErrorMessage)
        assert (error.code, error.source_frame) == ("bad_frame", 1)
        assert "not a JPEG, PNG or WebP" in error.message

        truncated = encode_image(gradient_image(), "jpeg")[:300]
        await client.send_frame(truncated)
        error = await client.receive()
        assert isinstance(error, ErrorMessage)
        assert (error.code, error.source_frame) == ("bad_frame", 2)

        await client.connection.send("{not json")
        error = await client.receive()
        assert isinstance(error, ErrorMessage) and error.code == "bad_message"

        await client.connection.send('{"type": "dance"}')
        error = await client.receive()
        assert isinstance(error, ErrorMessage)
        assert (error.code, error.field) == ("bad_message", "type")

        await client.send_frame(encode_image(gradient_image(), "jpeg"))
        output = await next_frame(client)
        assert output.source_frame == 3
        assert output.dropped_frames == 0


async def test_an_oversize_message_closes_with_1009_and_the_server_goes_on(
    server: ServerProcess,
) -> None:
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        with pytest.raises(ConnectionClosed) as closed:
            # The server may close while the 2 MiB are still being sent.
            await client.send_frame(b"\xff\xd8\xff" + bytes(2 * 2**20))
            await asyncio.wait_for(client.receive(), 30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        await client.send_frame(encode_image(gradient_image(), "jpeg"))
        assert (await next_frame(client)).source_frame == 1


async def test_an_unknown_model_is_refused_with_1008(server: ServerProcess) -> None:
    with pytest.raises(ServerError) as refused:
        await StreamClient.connect(server.ws_url, model="nope")
    assert refused.value.error.code == "unknown_model"
    assert "this server serves: invert" in refused.value.error.message
    assert refused.value.close_code == 1008


async def test_a_full_server_refuses_with_1013_and_admits_after_a_close(
    one_slot_server: ServerProcess,
) -> None:
    await eventually(lambda: sessions(one_slot_server) == 0, "earlier sessions to end")
    first = await StreamClient.connect(one_slot_server.ws_url)
    with pytest.raises(ServerError) as refused:
        await StreamClient.connect(one_slot_server.ws_url)
    assert refused.value.error.code == "server_full"
    assert refused.value.close_code == 1013
    await first.close()
    await eventually(lambda: sessions(one_slot_server) == 0, "the slot to be released")
    async with await StreamClient.connect(one_slot_server.ws_url) as again:
        assert again.ready.model == "invert"


async def test_disconnect_mid_inference_frees_the_slot_at_the_end_of_the_step(
    one_slot_server: ServerProcess,
) -> None:
    # The server frees a slot just after a client's close returns: start from none taken.
    await eventually(lambda: sessions(one_slot_server) == 0, "earlier sessions to end")
    client = await StreamClient.connect(one_slot_server.ws_url)
    await client.update_params(delay_ms=1500)
    await client.send_frame(encode_image(gradient_image(), "jpeg"))
    await asyncio.sleep(0.3)  # the frame is now inside the 1.5 s model step
    await client.close()
    await asyncio.sleep(0.1)
    assert sessions(one_slot_server) == 1  # draining: the step still holds the worker slot
    await eventually(lambda: sessions(one_slot_server) == 0, "the slot to be released")
    async with await StreamClient.connect(one_slot_server.ws_url) as again:
        assert again.ready.session_id != client.ready.session_id
    await eventually(
        lambda: any("draining -> closed" in line for line in one_slot_server.log), "log"
    )


async def test_a_fast_camera_on_a_slow_model_sees_the_newest_frame_not_a_backlog(
    server: ServerProcess,
) -> None:
    frame = encode_image(gradient_image(), "jpeg")
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        await client.update_params(delay_ms=100)
        sent = 0
        lags: list[int] = []
        outputs: list[FrameOutput] = []

        async def camera() -> None:
            nonlocal sent
            for _ in range(150):  # 60 fps for 2.5 s into a 10 fps model
                await client.send_frame(frame)
                sent += 1
                await asyncio.sleep(1 / 60)

        async def viewer() -> None:
            while not outputs or outputs[-1].source_frame < 150:
                output = await next_frame(client)
                outputs.append(output)
                lags.append(sent - output.source_frame)

        await asyncio.gather(camera(), viewer())

    last = outputs[-1]
    assert last.source_frame == sent == 150
    # Every frame is accounted for: it became an output or it was counted as dropped.
    assert len(outputs) + last.dropped_frames == sent
    assert last.dropped_frames > sent / 2
    # A queue would fall ever further behind (a lag of ~130 frames by the end); the
    # newest-frame slot keeps it near one model step at the camera's rate.
    assert max(lags) < 40, lags
    assert [o.source_frame for o in outputs] == sorted({o.source_frame for o in outputs})


async def test_a_client_that_stops_reading_does_not_grow_server_memory(
    server: ServerProcess,
) -> None:
    frames = [encode_image(noise_image(seed=seed), "png") for seed in range(4)]
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        await client.update_params(output_format="png")
        for index in range(20):  # warm every allocation of the path
            await client.send_frame(frames[index % 4])
            await next_frame(client)
        rss_before = server.rss_bytes()
        for index in range(300):  # ~200 kB in and ~200 kB out per frame, never read
            await client.send_frame(frames[index % 4])
        await asyncio.sleep(1.0)  # invert takes ~1 ms: the worker has long caught up
        growth = server.rss_bytes() - rss_before
        # 280 unread outputs queued would be ~55 MB; the output slot holds one.
        assert growth < 25 * 2**20, f"server RSS grew by {growth / 2**20:.1f} MiB"
        outputs: list[FrameOutput] = []
        while not outputs or outputs[-1].source_frame < 320:
            message = await asyncio.wait_for(client.receive(), 30)
            if isinstance(message, FrameOutput):
                outputs.append(message)
        assert outputs[-1].dropped_frames > 200
        assert 20 + len(outputs) + outputs[-1].dropped_frames == 320


def sessions(server: ServerProcess) -> int:
    return int(httpx.get(f"{server.http_url}/healthz").json()["sessions"])


async def test_a_plain_websockets_client_gets_ready(server: ServerProcess) -> None:
    async with connect(server.ws_url + "/v1/stream") as raw:
        message = orjson.loads(await raw.recv())
        assert message["type"] == "ready"
        assert message["model"] == "invert"


async def test_a_close_without_a_code_is_answered_with_1000(server: ServerProcess) -> None:
    """What a browser's `close()` sends. An echo of it reads as 1005 at the client, which
    fal's JS client reports as an error (tests/fal/test_js_client.py)."""
    async with connect(server.ws_url + "/v1/stream") as raw:
        assert orjson.loads(await raw.recv())["type"] == "ready"
        await raw.close(code=None)  # type: ignore[arg-type]  # websockets sends no code then
        assert raw.protocol.close_rcvd is not None
        assert raw.protocol.close_rcvd.code == 1000


async def test_images_arriving_faster_than_they_decode_are_dropped_not_queued(
    server: ServerProcess,
) -> None:
    # Big camera frames sent back to back: each takes milliseconds to decode, while the
    # next arrives in microseconds. The server keeps reading and keeps only the newest.
    big = encode_image(gradient_image(2000, 2000), "jpeg", 95)
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        for _ in range(20):
            await client.send_frame(big)
        await client.send_frame(encode_image(gradient_image(), "jpeg"))  # the last: frame 21
        outputs: list[FrameOutput] = []
        while not outputs or outputs[-1].source_frame != 21:
            outputs.append(await next_frame(client))
    assert outputs[-1].dropped_frames > 0
    assert len(outputs) + outputs[-1].dropped_frames == 21


async def test_an_unknown_input_kind_is_refused_naming_the_field(server: ServerProcess) -> None:
    async with connect(f"{server.ws_url}/v1/stream?model=invert&input=audio") as websocket:
        refusal = orjson.loads(await websocket.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await websocket.recv()
    assert (refusal["code"], refusal["field"]) == ("bad_message", "input")
    assert "'audio'" in refusal["message"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
