"""fal's realtime protocol on a real `realtime serve`, spoken with a plain WebSocket
client and msgpack, byte for byte as fal's clients speak it (docs/fal.md). The
official clients themselves: test_python_client.py and test_js_client.py."""

from __future__ import annotations

import asyncio
import base64
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import orjson
import pytest
from support import StartServer, eventually, running_server
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from frames.codecs import decode_image, encode_image
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY = "fal-endpoint-key-0123456789"
IMAGE_APP = "fal-ai/fast-turbo-diffusion/image-to-image"
TEXT_APP = "fal-ai/fast-lcm-diffusion"
MAPPINGS = ("--fal-app", f"{IMAGE_APP}=invert", "--fal-app", f"{TEXT_APP}=tiny")


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--model", "tiny", "--api-key", KEY, *MAPPINGS)


def realtime_url(server: ServerProcess, app: str = IMAGE_APP, query: str = "") -> str:
    return f"{server.ws_url}/{app}/realtime{query}"


def fal_connect(
    server: ServerProcess, app: str = IMAGE_APP, *, key: str | None = KEY, query: str = ""
) -> Any:
    headers = {"Authorization": f"Key {key}"} if key else {}
    return connect(realtime_url(server, app, query), additional_headers=headers)


async def send(websocket: ClientConnection, **inputs: object) -> None:
    await websocket.send(msgpack.packb(inputs, use_bin_type=True))


async def receive(websocket: ClientConnection) -> dict[str, Any]:
    """The next result (a msgpack map) or error (an x-fal-error text frame)."""
    data = await asyncio.wait_for(websocket.recv(), 60)
    if isinstance(data, bytes):
        result: dict[str, Any] = msgpack.unpackb(data, raw=False)
        return result
    error: dict[str, Any] = orjson.loads(data)
    assert error["type"] == "x-fal-error", error
    return error


async def closed_normally(websocket: ClientConnection) -> str:
    """Waits for the server's close: it must be 1000; returns its reason."""
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(websocket.recv(), 60)
    assert closed.value.rcvd is not None, "the server did not close"
    assert closed.value.rcvd.code == 1000
    return closed.value.rcvd.reason


def jpeg(seed: int = 0) -> bytes:
    return encode_image(gradient_image(seed=seed), "jpeg", 95)


def assert_inverted(result: Mapping[str, Any], seed: int = 0) -> None:
    (image,) = result["images"]
    assert (image["content_type"], image["width"], image["height"]) == ("image/jpeg", 256, 256)
    pixels = decode_image(image["content"])
    expected = 255 - gradient_image(seed=seed).astype(int)
    assert np.abs(pixels.astype(int) - expected).mean() < 2.0


def mint(server: ServerProcess, *apps: str, ttl: float = 120, key: str = KEY) -> httpx.Response:
    return httpx.post(
        f"{server.http_url}/tokens/",
        json={"allowed_apps": list(apps), "token_expiration": ttl},
        headers={"Authorization": f"Key {key}"},
    )


def frames_total(server: ServerProcess, outcome: str) -> float:
    metrics = httpx.get(f"{server.http_url}/metrics", headers={"Authorization": f"Bearer {KEY}"})
    line = f'realtime_frames_total{{model="invert",outcome="{outcome}",transport="fal"}}'
    values = [row.split()[-1] for row in metrics.text.splitlines() if row.startswith(line)]
    return float(values[0]) if values else 0.0


async def test_frames_come_back_inverted_with_their_request_id(server: ServerProcess) -> None:
    async with fal_connect(server) as websocket:
        for n in range(3):
            await send(websocket, image_bytes=jpeg(n), request_id=f"r{n}", sync_mode=True)
            result = await receive(websocket)
            assert_inverted(result, seed=n)
            assert (result["request_id"], result["frame"]) == (f"r{n}", n + 1)
            assert set(result["timings"]) == {"decode", "control", "queue", "model", "encode"}
            assert result["dropped_frames"] == 0
    await eventually(lambda: frames_total(server, "sent") >= 3, "fal frames counted as sent")


async def test_a_json_request_gets_a_json_result_with_a_data_url(server: ServerProcess) -> None:
    data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg()).decode()
    async with fal_connect(server) as websocket:
        await websocket.send(orjson.dumps({"image_url": data_url, "request_id": 7}).decode())
        result = orjson.loads(await asyncio.wait_for(websocket.recv(), 60))
        (image,) = result["images"]
        assert image["url"].startswith("data:image/jpeg;base64,")
        image["content"] = base64.b64decode(image.pop("url").split(",", 1)[1])
        assert_inverted(result)
        assert result["request_id"] == 7


BAD_REQUESTS = {
    "not a map": ([1, 2], "bad_message", None),
    "unknown input": ({"image_bytes": jpeg(), "bogus": 1}, "invalid_params", "bogus"),
    "a param the model lacks": ({"image_bytes": jpeg(), "prompt": "a"}, "invalid_params", "prompt"),
    "out of range": ({"image_bytes": jpeg(), "delay_ms": -1}, "invalid_params", "delay_ms"),
    "no image": ({"request_id": "x"}, "bad_message", "image_bytes"),
    "image as text": ({"image_bytes": "abc"}, "bad_message", "image_bytes"),
    "a web URL": ({"image_url": "https://example.com/a.jpg"}, "bad_message", "image_url"),
    "bad base64": ({"image_url": "data:image/jpeg;base64,@@"}, "bad_message", "image_url"),
    "two images": ({"image_bytes": jpeg(), "image_url": "data:,"}, "bad_message", "image_url"),
    "more images": ({"image_bytes": jpeg(), "num_images": 2}, "invalid_params", "num_images"),
    "corrupt image": ({"image_bytes": b"not an image", "request_id": 9}, "bad_frame", None),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
async def test_a_bad_request_gets_an_error_naming_the_field_and_the_session_goes_on(
    server: ServerProcess, case: str
) -> None:
    request, code, field = BAD_REQUESTS[case]
    async with fal_connect(server) as websocket:
        await websocket.send(msgpack.packb(request, use_bin_type=True))
        error = await receive(websocket)
        assert (error["error"], error.get("field")) == (code, field), error
        if isinstance(request, dict) and "request_id" in request:
            assert error["request_id"] == request["request_id"]
        await send(websocket, image_bytes=jpeg(), request_id="after")
        result = await receive(websocket)
        assert result["request_id"] == "after"
        assert_inverted(result)


async def test_a_text_to_image_app_makes_one_image_per_request(server: ServerProcess) -> None:
    async with fal_connect(server, TEXT_APP) as websocket:
        images = []
        for n, prompt in enumerate(["a red boat", "a red boat", "a green forest"]):
            await send(websocket, prompt=prompt, num_inference_steps=2, seed=3, request_id=n)
            result = await receive(websocket)
            assert (result["request_id"], result["seed"]) == (n, 3)
            images.append(decode_image(result["images"][0]["content"]).astype(int))
        assert np.array_equal(images[0], images[1])  # the same params, asked twice
        assert np.abs(images[0] - images[2]).mean() > 1.0  # the prompt changes the image
        await send(websocket, prompt="x", num_inference_steps=99)
        assert (await receive(websocket))["field"] == "steps"


async def test_a_token_opens_the_apps_it_names_and_nothing_else(server: ServerProcess) -> None:
    answer = mint(server, "fast-turbo-diffusion")
    assert answer.status_code == 200
    token = answer.json()
    assert isinstance(token, str)  # fal's clients take a bare JSON string
    async with fal_connect(server, key=None, query=f"?fal_jwt_token={token}") as websocket:
        await send(websocket, image_bytes=jpeg())
        assert_inverted(await receive(websocket))
    # The same alias's other apps, yes; another app, or a native session, no.
    refusals = [
        (realtime_url(server, TEXT_APP, f"?fal_jwt_token={token}"), "forbidden"),
        (f"{server.ws_url}/v1/stream?model=invert&token={token}", "forbidden"),
    ]
    native = httpx.post(
        f"{server.http_url}/v1/tokens",
        json={"model": "invert"},
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()["token"]
    refusals += [
        (realtime_url(server, query=f"?fal_jwt_token={native}"), "forbidden"),
        (realtime_url(server, query=f"?fal_jwt_token={KEY}"), "unauthorized"),  # a key in a URL
        (realtime_url(server), "unauthorized"),
    ]
    for url, code in refusals:
        async with connect(url) as websocket:
            first = orjson.loads(await asyncio.wait_for(websocket.recv(), 60))
            assert code in (first.get("error"), first.get("code")), (url, first)
            if "/realtime" in url:
                assert await closed_normally(websocket) == code


async def test_an_expired_token_is_refused(server: ServerProcess) -> None:
    token = mint(server, "fast-turbo-diffusion", ttl=0.5).json()
    await asyncio.sleep(1.0)
    async with fal_connect(server, key=None, query=f"?fal_jwt_token={token}") as websocket:
        error = await receive(websocket)
        assert error["error"] == "unauthorized" and "expired" in error["reason"]
        await closed_normally(websocket)


@pytest.mark.parametrize(
    ("key", "body", "status", "field"),
    [
        (None, {"allowed_apps": ["fast-turbo-diffusion"]}, 401, None),
        (KEY, {"allowed_apps": "fast-turbo-diffusion"}, 400, "allowed_apps"),
        (KEY, {"allowed_apps": []}, 400, "allowed_apps"),
        (KEY, {"allowed_apps": ["no-such-app"]}, 404, "allowed_apps"),
        (KEY, {"allowed_apps": ["fast-turbo-diffusion"], "token_expiration": 10**6}, 400, None),
        (KEY, {"allowed_apps": ["fast-turbo-diffusion"], "pad": "x" * 100_000}, 413, None),
    ],
)
async def test_token_requests_are_checked_and_answered_with_a_detail(
    server: ServerProcess, key: str | None, body: object, status: int, field: str | None
) -> None:
    headers = {"Authorization": f"Key {key}"} if key else {}
    answer = httpx.post(f"{server.http_url}/tokens/", json=body, headers=headers)
    assert answer.status_code == status
    assert answer.json()["detail"]  # what fal's clients show
    if field is not None:
        assert answer.json()["field"] == field
    if status == 400 and field is None:
        assert answer.json()["field"] == "token_expiration"


async def test_a_token_cannot_mint_tokens(server: ServerProcess) -> None:
    token = mint(server, "fast-turbo-diffusion").json()
    assert mint(server, "fast-turbo-diffusion", key=token).status_code == 403


async def test_an_unknown_app_is_not_found_once_the_caller_is_known(
    server: ServerProcess,
) -> None:
    async with fal_connect(server, "fal-ai/no-such-app", key=None) as websocket:
        assert (await receive(websocket))["error"] == "unauthorized"
    async with fal_connect(server, "fal-ai/no-such-app") as websocket:
        error = await receive(websocket)
        assert error["error"] == "not_found" and IMAGE_APP in error["reason"]
        assert await closed_normally(websocket) == "not_found"
    assert httpx.get(realtime_url(server).replace("ws", "http", 1)).status_code == 426


@pytest.mark.parametrize(("buffering", "kept"), [(1, ["r8"]), (3, ["r6", "r7", "r8"])])
async def test_max_buffering_keeps_the_newest_requests_and_counts_the_rest(
    server: ServerProcess, buffering: int, kept: list[str]
) -> None:
    async with fal_connect(server, query=f"?max_buffering={buffering}") as websocket:
        # r1 holds the model for 1.5 s, while r2 ... r8 arrive.
        await send(websocket, image_bytes=jpeg(), delay_ms=1500, request_id="r1")
        await asyncio.sleep(0.5)  # r1 in the model (sent at once, a newer one would replace it)
        for n in range(2, 9):
            await send(websocket, image_bytes=jpeg(), request_id=f"r{n}")
        results = [await receive(websocket) for _ in range(1 + len(kept))]
        assert [result["request_id"] for result in results] == ["r1", *kept]
        assert results[-1]["dropped_frames"] == 7 - len(kept)


async def test_a_bad_max_buffering_is_refused(server: ServerProcess) -> None:
    async with fal_connect(server, query="?max_buffering=61") as websocket:
        assert (await receive(websocket))["field"] == "max_buffering"
        await closed_normally(websocket)


async def test_requests_sent_while_waiting_in_line_are_kept_newest_first(
    start_server: StartServer,
) -> None:
    one_slot = start_server(
        "--model", "invert", "--max-sessions", "1", "--queue-timeout", "60", *MAPPINGS[:2]
    )
    async with fal_connect(one_slot, key=None) as first:
        await send(first, image_bytes=jpeg())
        await receive(first)
        async with fal_connect(one_slot, key=None) as waiting:
            await eventually(lambda: "waits in line" in "\n".join(one_slot.log), "a queued session")
            for n in range(3):
                await send(waiting, image_bytes=jpeg(n), request_id=n)
            await first.close()
            result = await receive(waiting)
            assert (result["request_id"], result["dropped_frames"]) == (2, 2)
            assert_inverted(result, seed=2)


async def test_an_idle_session_hears_TIMEOUT_and_is_closed_normally(
    start_server: StartServer,
) -> None:
    idle = start_server("--model", "invert", "--idle-timeout", "1", *MAPPINGS[:2])
    async with fal_connect(idle, key=None) as websocket:
        await send(websocket, image_bytes=jpeg())
        await receive(websocket)
        assert (await receive(websocket))["error"] == "TIMEOUT"  # fal's code, which its JS
        assert await closed_normally(websocket) == "idle_timeout"  # client takes as normal


async def test_shutdown_sends_the_frame_in_the_model_then_closes_normally(
    model_cache: Path,
) -> None:
    with running_server("--model", "invert", *MAPPINGS[:2], cache=model_cache) as draining:
        async with fal_connect(draining, key=None) as websocket:
            await send(websocket, image_bytes=jpeg(), delay_ms=1000, request_id="last")
            await asyncio.sleep(0.3)  # now in its 1 s model step
            draining.process.send_signal(signal.SIGTERM)
            closing = await receive(websocket)
            assert closing["error"] == "shutting_down"
            assert (await receive(websocket))["request_id"] == "last"
            assert await closed_normally(websocket) == "shutting_down"


async def test_a_websocket_to_another_path_is_not_found(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{server.ws_url}/fal-ai/app/not-realtime"):
            pass
    assert refused.value.response.status_code == 404
