"""Avatar mode through a real `realtime serve` of tiny-avatar: a reference image set over
HTTP for a live WebSocket session, switched and cleared mid-stream; a control computed
from each frame in its own hop; the errors that name their field."""

from __future__ import annotations

import asyncio
import socket

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from support import StartServer

from frames.codecs import encode_image
from frames.frame import Pixels
from frames.samples import gradient_image, moving_face, noise_image
from realtime.bench.harness import ServerProcess
from realtime.clients.http import set_reference
from realtime.clients.webrtc import CameraTrack, RtcClient
from realtime.clients.websocket import FrameOutput, ServerError, StreamClient
from session.protocol import ErrorMessage, ParamsMessage

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY = "avatar-key"


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "tiny-avatar", "--model", "tiny", "--api-key", KEY)


def png(pixels: Pixels) -> bytes:
    return encode_image(pixels, "png")


CAMERA = png(gradient_image(256, 256))
FIRST_REFERENCE = png(noise_image(200, 240, seed=1))
SECOND_REFERENCE = png(noise_image(240, 200, seed=2))


async def output_of(client: StreamClient, frame: bytes = CAMERA) -> FrameOutput:
    await client.send_frame(frame)
    while not isinstance(message := await asyncio.wait_for(client.receive(), 60), FrameOutput):
        assert isinstance(message, ParamsMessage), message
    return message


async def connect(server: ServerProcess, model: str = "tiny-avatar") -> StreamClient:
    client = await StreamClient.connect(server.ws_url, model=model, api_key=KEY)
    await client.update_params(output_format="png")
    return client


async def test_the_reference_conditions_outputs_and_switches_without_a_reconnect(
    server: ServerProcess,
) -> None:
    async with await connect(server) as client:
        session = client.ready.session_id
        plain = (await output_of(client)).pixels()
        await set_reference(server.http_url, session, FIRST_REFERENCE, KEY)
        first = (await output_of(client)).pixels()
        assert np.abs(first.astype(int) - plain).mean() > 1, "the reference changes the output"
        again = (await output_of(client)).pixels()
        assert np.array_equal(first, again), "the same reference gives the same output"
        await set_reference(server.http_url, session, SECOND_REFERENCE, KEY)
        second = (await output_of(client)).pixels()
        assert np.abs(second.astype(int) - first).mean() > 1, "the new reference, at once"
        await client.update_params(reference_scale=0.0)
        unscaled = (await output_of(client)).pixels()
        assert np.array_equal(unscaled, plain), "reference_scale 0 ignores it"
        await client.update_params(reference_scale=0.6)
        await set_reference(server.http_url, session, None, KEY)
        cleared = (await output_of(client)).pixels()
        assert np.array_equal(cleared, plain), "DELETE clears it"


async def test_a_control_is_computed_per_frame_in_its_own_hop(server: ServerProcess) -> None:
    async with await connect(server) as client:
        plain = await output_of(client)
        assert plain.timings_ms["control"] == 0
        await client.update_params(control="canny", control_scale=1.5)
        controlled = await output_of(client)
        assert controlled.timings_ms["control"] > 0
        assert np.abs(controlled.pixels().astype(int) - plain.pixels()).mean() > 1
    metrics = httpx.get(
        f"{server.http_url}/metrics", headers={"Authorization": f"Bearer {KEY}"}
    ).text
    assert 'realtime_hop_seconds_count{hop="control",model="tiny-avatar"}' in metrics


async def test_face_control_follows_a_moving_face(server: ServerProcess) -> None:
    """The face slides 128 px across the frame: its landmarks' drawing goes with it, and
    so does what the face control changes in the output (the difference from the same
    frame without a control; the random ControlNet spreads it, so it moves less)."""
    frames = moving_face(5)
    first, last = frames[0], frames[-1]
    effects = []
    async with await connect(server) as face, await connect(server) as plain:
        await face.update_params(control="face", control_scale=1.5)
        for pixels, _ in (first, last):
            controlled = await output_of(face, png(pixels))
            assert controlled.timings_ms["control"] > 0
            without = (await output_of(plain, png(pixels))).pixels()
            effects.append(np.abs(controlled.pixels().astype(int) - without).sum(axis=2))
    assert all(effect.mean() > 1 for effect in effects), "the control changes the output"
    moved = centroid_x(effects[1]) - centroid_x(effects[0])
    assert moved > 5, f"the control's effect moved {moved:.1f} px with the face's +128"


def centroid_x(weights: np.ndarray) -> float:
    columns = weights.sum(axis=0)
    return float((columns * np.arange(len(columns))).sum() / columns.sum())


async def test_a_corrupt_reference_or_unknown_control_names_its_field_and_the_session_goes_on(
    server: ServerProcess,
) -> None:
    async with await connect(server) as client:
        session = client.ready.session_id
        with pytest.raises(ServerError) as corrupt:
            await set_reference(server.http_url, session, b"\xff\xd8 not a jpeg", KEY)
        assert (corrupt.value.status, corrupt.value.error.code) == (400, "invalid_params")
        assert corrupt.value.error.field == "reference"
        with pytest.raises(ServerError) as unknown:
            await client.update_params(control="depth")
        assert (unknown.value.error.code, unknown.value.error.field) == (
            "invalid_params",
            "control",
        )
        assert "face" in unknown.value.error.message and "canny" in unknown.value.error.message
        assert (await output_of(client)).pixels().shape == (256, 256, 3)


async def test_a_model_without_an_ip_adapter_refuses_a_reference_naming_it(
    server: ServerProcess,
) -> None:
    listed = httpx.get(f"{server.http_url}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    takes = {model["id"]: model["takes_reference"] for model in listed.json()}
    assert (takes["tiny"], takes["tiny-avatar"]) == (False, True)
    async with await connect(server, model="tiny") as client:
        with pytest.raises(ServerError) as refused:
            await set_reference(server.http_url, client.ready.session_id, FIRST_REFERENCE, KEY)
        assert (refused.value.status, refused.value.error.code) == (400, "invalid_params")
        assert refused.value.error.field == "reference"
        with pytest.raises(ServerError) as no_control:
            await client.update_params(control="face")
        assert no_control.value.error.field == "control"
        assert (await output_of(client)).pixels().shape == (256, 256, 3)


async def test_the_reference_is_its_owners_and_checked_before_the_body(
    server: ServerProcess,
) -> None:
    async with await connect(server) as client:
        resource = f"{server.http_url}/v1/sessions/{client.ready.session_id}/reference"
        async with httpx.AsyncClient() as http:
            anonymous = await http.put(resource, content=FIRST_REFERENCE)
            assert anonymous.status_code == 401
            unknown = await http.put(
                f"{server.http_url}/v1/sessions/nosuchsession/reference",
                content=FIRST_REFERENCE,
                headers={"Authorization": f"Bearer {KEY}"},
            )
            assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
        # Over the frames' cap (8 MiB), declared: refused before the body is read.
        head = (
            f"PUT /v1/sessions/{client.ready.session_id}/reference HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Length: {9 * 2**20}\r\n\r\n"
        )
        answer = await asyncio.to_thread(send_head, server.port, head.encode())
        assert answer.split()[1] == b"413" and b'"too_large"' in answer, answer
        assert (await output_of(client)).pixels().shape == (256, 256, 3)
        assert not [e for e in client.errors if isinstance(e, ErrorMessage)]


async def test_a_whip_session_takes_its_reference_over_http(server: ServerProcess) -> None:
    """WHIP has no channel but its media: the reference's HTTP resource works for it."""
    camera = CameraTrack(gradient_image(256, 256), fps=15)
    ingest = await RtcClient.whip(server.http_url, camera, model="tiny-avatar", api_key=KEY)
    assert ingest.session_id is not None
    viewer = await RtcClient.whep(server.http_url, ingest.session_id, api_key=KEY)

    async def average_frame() -> npt.NDArray[np.float64]:
        frames = [await asyncio.wait_for(viewer.next_frame(), 30) for _ in range(3)]
        average: npt.NDArray[np.float64] = np.mean(frames, axis=0)
        return average

    try:
        for _ in range(8):  # the encoder's first frames, at a low quality
            await asyncio.wait_for(viewer.next_frame(), 30)
        before = await average_frame()
        await set_reference(server.http_url, ingest.session_id, FIRST_REFERENCE, KEY)
        # The frames queued meanwhile (more on a busy machine) were made before it.
        changes: list[float] = []
        while len(changes) < 20 and max(changes, default=0.0) <= 3:
            changes.append(float(np.abs(await average_frame() - before).mean()))
    finally:
        for client in (viewer, ingest):
            await client.close()
    assert max(changes) > 3, changes


def send_head(port: int, head: bytes) -> bytes:
    """Send a request's head only; the answer, until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        answer = b""
        while received := sock.recv(4096):
            answer += received
    return answer
