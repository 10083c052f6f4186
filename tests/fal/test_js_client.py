"""fal's npm client, `@fal-ai/client` 1.10.1, unchanged, under Node against a real
`realtime serve`: js/camera.mjs runs `fal.realtime.connect` with a token provider that
asks the server's `POST /tokens/` (the key stays on "the app's backend"), with the global
WebSocket redirected to the server (docs/fal.md), and prints what the client reports.
`make test-npm-deps` installs it (js/package-lock.json)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from support import StartServer, wait_until

from frames.codecs import decode_image, encode_image
from frames.geometry import fit
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess

JS = Path(__file__).parent / "js"
KEY = "fal-js-client-key-0123456789"
IMAGE_APP = "fal-ai/fast-turbo-diffusion/image-to-image"
OTHER_APP = "fal-ai/fast-lcm-diffusion/image-to-image"
MAPPINGS = ("--fal-app", f"{IMAGE_APP}=invert", "--fal-app", f"{OTHER_APP}=tiny")
MODEL_SIZE = 256  # invert's: it fits each 512x512 camera frame to it


@pytest.fixture(scope="module")
def node() -> str:
    """Node, with the client installed by `make test-npm-deps` (CI must have both)."""
    node = shutil.which("node")
    if node is None:
        missing = "node is not installed"
    elif (version := node_version(node)) < (18,):  # @fal-ai/client's engines
        missing = f"node {'.'.join(map(str, version))} is too old: @fal-ai/client needs 18"
    elif not (JS / "node_modules" / "@fal-ai" / "client").is_dir():
        missing = "@fal-ai/client is not installed: run `make test-npm-deps`"
    else:
        return node
    if os.environ.get("CI"):
        pytest.fail(missing)
    pytest.skip(missing)


def node_version(node: str) -> tuple[int, ...]:
    answer = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    return tuple(int(part) for part in answer.stdout.strip().lstrip("v").split("."))


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--model", "tiny", "--api-key", KEY, *MAPPINGS)


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Camera frames as fal's demo sends them: 512x512 JPEGs at quality 0.7."""
    folder = tmp_path_factory.mktemp("camera")
    frames = []
    for n in range(4):
        frame = folder / f"frame{n}.jpg"
        frame.write_bytes(encode_image(gradient_image(512, 512, seed=n), "jpeg", 70))
        frames.append(frame)
    return frames


@dataclass
class Run:
    """What the client reported, in order (camera.mjs's JSON lines): `events` up to its
    summary, `closing` what came of its `connection.close()` after that."""

    events: list[dict[str, Any]]
    summary: dict[str, Any]
    closing: list[dict[str, Any]]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == kind]


def run_client(node: str, server: ServerProcess, out: Path, **plan: object) -> Run:
    """camera.mjs with `plan` (its header comment) over the defaults: the image app,
    a token for its alias, results written to `out`."""
    plan = {
        "server": server.http_url,
        "key": KEY,
        "app": IMAGE_APP,
        "token_apps": ["fast-turbo-diffusion"],
        "out": str(out),
        **plan,
    }
    plan_file = out / "plan.json"
    plan_file.write_bytes(orjson.dumps(plan))
    done = subprocess.run(
        [node, "camera.mjs", str(plan_file)],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
    )
    assert done.returncode == 0, done.stderr
    events = [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    end = next(n for n, event in enumerate(events) if event["event"] == "summary")
    return Run(events[:end], events[end], events[end + 1 :])


def assert_inverts(result: dict[str, Any], frame: Path) -> None:
    """The result's image is the inversion of `frame`, within JPEG's tolerance."""
    assert (result["content_class"], result["content_type"]) == ("Uint8Array", "image/jpeg")
    assert (result["width"], result["height"]) == (MODEL_SIZE, MODEL_SIZE)
    pixels = decode_image(Path(result["file"]).read_bytes()).astype(int)
    expected = 255 - fit(decode_image(frame.read_bytes()), MODEL_SIZE, MODEL_SIZE).astype(int)
    assert np.abs(pixels - expected).mean() < 3.0, result["request_id"]


def frames_total(server: ServerProcess, outcome: str) -> float:
    metrics = httpx.get(f"{server.http_url}/metrics", headers={"Authorization": f"Bearer {KEY}"})
    line = f'realtime_frames_total{{model="invert",outcome="{outcome}",transport="fal"}}'
    values = [row.split()[-1] for row in metrics.text.splitlines() if row.startswith(line)]
    return float(values[0]) if values else 0.0


def test_the_camera_demo_flow_gets_the_newest_frames_back_and_counts_the_rest(
    node: str, server: ServerProcess, camera: list[Path], tmp_path: Path
) -> None:
    outcomes = ("received", "sent", "dropped")
    before = {outcome: frames_total(server, outcome) for outcome in outcomes}
    # fal's camera demo sends a frame every 16 ms with no throttle; the model takes
    # 50 ms a frame here, so most frames must be dropped, not queued.
    run = run_client(
        node,
        server,
        tmp_path,
        camera={
            "frames": [str(frame) for frame in camera],
            "inputs": {"delay_ms": 50},
            "interval_ms": 16,
            "duration_ms": 3000,
        },
        settle_ms=1500,
    )
    results, summary = run.of("result"), run.summary
    assert run.of("error") == []
    assert len(results) >= 5
    for result in results:  # each one the inversion of the frame it answers
        assert_inverts(result, camera[int(result["request_id"][1:]) % len(camera)])
    # What reached the socket (the client keeps only its newest request until the
    # socket opens) came back or was dropped, and counted: none is lost or queued.
    carried = summary["socket_sends"]["binary"]
    last = results[-1]
    assert len(results) < carried <= summary["sent"]
    assert last["dropped_frames"] > 0
    assert len(results) + last["dropped_frames"] == carried == last["frame"]
    assert [r["frame"] for r in results] == sorted({r["frame"] for r in results})
    wait_until(
        lambda: (
            [frames_total(server, outcome) - before[outcome] for outcome in outcomes]
            == [carried, len(results), last["dropped_frames"]]
        ),
        "the fal frames counted in /metrics",
    )
    latencies = [result["latency_ms"] for result in results]
    seconds = (results[-1]["t"] - results[0]["t"]) / 1000
    print(
        f"fal JS camera: {summary['sent']} sent, {carried} on the socket, {len(results)} results"
        f" ({(len(results) - 1) / seconds:.1f}/s), {last['dropped_frames']} dropped;"
        f" latency p50 {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms"
    )


BAD_REQUESTS: list[tuple[dict[str, Any], str, str | None]] = [  # inputs, code, field
    ({"image_file": 0, "bogus": 1, "request_id": "unknown"}, "invalid_params", "bogus"),
    ({"image_text": "not a JPEG", "request_id": "corrupt"}, "bad_frame", None),
    ({"request_id": "missing"}, "bad_message", "image_bytes"),
]


def test_bad_requests_reach_on_error_and_the_session_goes_on(
    node: str, server: ServerProcess, camera: list[Path], tmp_path: Path
) -> None:
    steps: list[dict[str, Any]] = [
        {"send": {**inputs, "image_file": str(camera[0])} if "image_file" in inputs else inputs}
        for inputs, _, _ in BAD_REQUESTS
    ]
    steps.append({"send": {"image_file": str(camera[1]), "request_id": "good"}})
    run = run_client(node, server, tmp_path, steps=[{**step, "await": True} for step in steps])
    assert [event["got"] for event in run.of("awaited")] == ["error"] * 3 + ["result"]
    for error, (inputs, code, field) in zip(run.of("error"), BAD_REQUESTS, strict=True):
        body = error["body"]  # the x-fal-error frame, in the client's ApiError
        assert (body["type"], body["error"], body.get("field")) == ("x-fal-error", code, field)
        assert body["request_id"] == inputs["request_id"]
        assert (error["status"], error["message"]) == (400, f"{code}: {body['reason']}")
    (result,) = run.of("result")
    assert result["request_id"] == "good"
    assert_inverts(result, camera[1])
    assert len(run.of("open")) == 1  # one session throughout
    assert run.of("close") == []


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ({"token_apps": ["fast-lcm-diffusion"]}, "forbidden"),  # another app's
        ({"token_expiration": 0.5, "token_delay_ms": 1500}, "unauthorized"),  # expired
    ],
)
def test_a_token_that_does_not_open_the_app_reaches_on_error_once(
    node: str,
    server: ServerProcess,
    camera: list[Path],
    tmp_path: Path,
    token: dict[str, object],
    code: str,
) -> None:
    send = {"image_file": str(camera[0]), "request_id": "refused"}
    run = run_client(node, server, tmp_path, steps=[{"send": send, "await": True}], **token)
    assert run.of("result") == []
    (error,) = run.of("error")  # and no second one for the close: it is 1000
    assert error["body"]["error"] == code
    assert [close["code"] for close in run.of("close")] == [1000]


def test_an_idle_session_ends_without_an_error_and_the_client_reconnects(
    node: str, start_server: StartServer, camera: list[Path], tmp_path: Path
) -> None:
    idle = start_server("--model", "invert", "--api-key", KEY, "--idle-timeout", "1", *MAPPINGS[:2])
    frame = {"image_file": str(camera[2])}
    run = run_client(
        node,
        idle,
        tmp_path,
        steps=[
            {"send": {**frame, "request_id": "first"}, "await": True, "sleep_ms": 2500},
            {"send": {**frame, "request_id": "again"}, "await": True},
        ],
    )
    # TIMEOUT, then a close with 1000: the client reports neither, and its next send
    # asks for a new token and opens a new session.
    assert run.of("error") == []
    assert [result["request_id"] for result in run.of("result")] == ["first", "again"]
    assert [close["code"] for close in run.of("close")][:1] == [1000]
    assert len(run.of("open")) == len(run.of("token")) == 2
    for result in run.of("result"):
        assert_inverts(result, camera[2])


def test_close_ends_the_session_cleanly(
    node: str, server: ServerProcess, camera: list[Path], tmp_path: Path
) -> None:
    send = {"image_file": str(camera[3]), "request_id": "only"}
    run = run_client(node, server, tmp_path, steps=[{"send": send, "await": True}])
    (result,) = run.of("result")
    assert_inverts(result, camera[3])
    # `connection.close()` sends a close frame without a code; the server answers 1000,
    # the only code the client does not report as an error.
    assert [event["event"] for event in run.closing] == ["close"]
    assert run.closing[0]["code"] == 1000


def test_a_session_outlives_its_token_while_the_client_refreshes_it(
    node: str, server: ServerProcess, camera: list[Path], tmp_path: Path
) -> None:
    camera_flow = {
        "frames": [str(camera[0])],
        "inputs": {},
        "interval_ms": 100,
        "duration_ms": 3000,
    }
    run = run_client(node, server, tmp_path, token_expiration=1, camera=camera_flow)
    first_token = run.of("token")[0]["t"]
    # The client fetched a new token each 0.9 s, for its next connection: the token is
    # checked when the session opens, and the session goes on past its expiry.
    assert len(run.of("token")) >= 2
    assert len(run.of("open")) == 1
    assert run.of("error") == []
    assert any(result["t"] > first_token + 2000 for result in run.of("result"))


DEMO = {  # what fal's camera demo sends with each frame (camera-turbo/page.tsx)
    "prompt": "a picture of george clooney, elegant, in a suit, 8k, uhd",
    "num_inference_steps": 3,
    "strength": 0.6,
    "guidance_scale": 1,
    "seed": 6252023,
}
DRAWING_DEMO = {  # its drawing demo's (realtime/page.tsx); model_name, image_size: no effect
    "prompt": "a moon in a night sky",
    "model_name": "runwayml/stable-diffusion-v1-5",
    "image_size": "square",
    "num_inference_steps": 4,
    "seed": 6252023,
}


def test_fal_demos_inputs_as_they_are_make_images_that_follow_the_prompt(
    node: str, server: ServerProcess, camera: list[Path], tmp_path: Path
) -> None:
    frame = {"image_file": str(camera[0])}
    requests = [DEMO, DEMO, {**DEMO, "prompt": "a green forest"}, DRAWING_DEMO]
    run = run_client(
        node,
        server,
        tmp_path,
        app=OTHER_APP,  # `tiny`, whose prompt changes its images
        token_apps=["fast-lcm-diffusion"],
        steps=[{"send": {**inputs, **frame}, "await": True} for inputs in requests],
    )
    assert run.of("error") == []
    results = run.of("result")
    assert [result["seed"] for result in results] == [6252023] * 4
    images = [decode_image(Path(result["file"]).read_bytes()).astype(int) for result in results]
    assert np.array_equal(images[0], images[1])  # the same request, twice
    assert np.abs(images[0] - images[2]).mean() > 1.0  # another prompt
