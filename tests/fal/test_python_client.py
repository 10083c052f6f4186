"""fal's official Python client (`fal-client` from PyPI, unchanged) against a real
`realtime serve` over TLS: each scenario is a program of its own in a child process
(client_program.py), since the client takes its host, key and trust from the
environment at import, as a user's program does (docs/fal.md)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from certificates import Certificate
from support import StartServer

from frames.codecs import decode_image, encode_image
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess

KEY = "fal-python-client-key-0123456789"
INVERT_APP = "fal-ai/fast-turbo-diffusion/image-to-image"
TINY_APP = "fal-ai/fast-lcm-diffusion/image-to-image"
OTHER_APP = "fal-ai/other-app"
PROGRAM = Path(__file__).with_name("client_program.py")
RECEIVE = {"receive": True}

Reply = dict[str, Any]


@pytest.fixture(scope="module")
def server(start_server: StartServer, certificate: Certificate) -> ServerProcess:
    apps = [f"{INVERT_APP}=invert", f"{TINY_APP}=tiny", f"{OTHER_APP}=invert"]
    mappings = [option for app in apps for option in ("--fal-app", app)]
    # A long header timeout: twice on a loaded CI machine, fal's client found its
    # connection closed with no answer, the server having logged a 10 s header timeout
    # (cause not found; the failure message below carries the server's log).
    return start_server(
        "--model", "invert", "--model", "tiny", "--api-key", KEY, "--header-timeout", "20",
        *certificate.serve_args, *mappings,
    )  # fmt: skip


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three different JPEG frames, as files a program reads."""
    folder = tmp_path_factory.mktemp("frames")
    files = [folder / f"frame{seed}.jpg" for seed in range(3)]
    for seed, file in enumerate(files):
        file.write_bytes(encode_image(gradient_image(seed=seed), "jpeg", 90))
    return files


def run_program(
    server: ServerProcess, certificate: Certificate, *sessions: dict[str, Any]
) -> list[list[Reply]]:
    """client_program.py's replies to SESSIONS, run as a user runs fal's client: the
    server's host, a key and the certificate to trust in the environment."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FAL_")}
    env |= {
        "FAL_RUN_HOST": f"127.0.0.1:{server.port}",  # the realtime host, read at import
        "FAL_KEY": KEY,
        "SSL_CERT_FILE": str(certificate.certfile),  # trusted by httpx and websockets
        "NO_PROXY": "*",
    }
    plan = {"rest_url": server.http_url, "sessions": list(sessions)}
    for attempt in range(2):
        done = subprocess.run(
            [sys.executable, str(PROGRAM)],
            input=json.dumps(plan),
            capture_output=True,
            text=True,
            env=env,
            timeout=150,
        )
        # Seen 3 times in ~20 CI runs, cause not found: the client's TLS WebSocket
        # handshake reaches the server, which never sees its request headers and
        # closes it at --header-timeout. One retry of that exact failure only.
        unseen = "connection closed while reading HTTP status line" in done.stderr
        if not (done.returncode and unseen and attempt == 0):
            break
    server_log = "\n".join(server.log[-40:])
    assert done.returncode == 0, f"{done.stderr}\nthe server's log ends:\n{server_log}"
    replies: list[list[Reply]] = json.loads(done.stdout)
    return replies


def session(app: str = INVERT_APP, *, use_jwt: bool, **options: object) -> dict[str, Any]:
    """A session's plan; `steps=[...]` (sends and receives) is one of OPTIONS."""
    return {"app": app, "use_jwt": use_jwt, **options}


def send(image: Path | None = None, **inputs: object) -> dict[str, Any]:
    return {"send": inputs if image is None else {"image_file": str(image), **inputs}}


def exchange(*requests: dict[str, Any]) -> list[dict[str, Any]]:
    """Each request, then its reply."""
    return [step for request in requests for step in (request, RECEIVE)]


def pixels(result: Reply) -> np.ndarray[Any, np.dtype[np.int64]]:
    (image,) = result["result"]["images"]
    assert image["content_type"] == "image/jpeg", image
    decoded = decode_image(base64.b64decode(image["content"])).astype(np.int64)
    assert decoded.shape[:2] == (image["height"], image["width"])
    return decoded


def assert_inverted(result: Reply, sent: Path) -> None:
    """The result is `sent` inverted, within JPEG's tolerance."""
    source = decode_image(sent.read_bytes()).astype(np.int64)
    assert np.abs(pixels(result) - (255 - source)).mean() < 2.0


def mint(server: ServerProcess, certificate: Certificate, alias: str, ttl: float) -> str:
    """A token from POST /tokens/, as an app's backend asks for one."""
    answer = httpx.post(
        f"{server.http_url}/tokens/",
        json={"allowed_apps": [alias], "token_expiration": ttl},
        headers={"Authorization": f"Key {KEY}"},
        verify=certificate.trusted(),
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()
    return token


def test_a_key_opens_a_session_and_frames_come_back_inverted(
    server: ServerProcess, certificate: Certificate, images: list[Path]
) -> None:
    requests = [send(image, request_id=f"r{n}") for n, image in enumerate(images)]
    (replies,) = run_program(server, certificate, session(use_jwt=False, steps=exchange(*requests)))
    assert [reply["result"]["request_id"] for reply in replies] == ["r0", "r1", "r2"]
    for reply, image in zip(replies, images, strict=True):
        assert_inverted(reply, image)
    assert replies[-1]["result"]["dropped_frames"] == 0


def test_a_token_from_the_server_opens_a_session_and_the_prompt_shapes_the_image(
    server: ServerProcess, certificate: Certificate, images: list[Path]
) -> None:
    # Token mode asks POST {REST_URL}/tokens/ first: client_program.py points
    # fal_client.client.REST_URL at the server, as docs/fal.md tells a user to.
    prompts = ["a red boat", "a red boat", "a green forest"]
    tiny = [send(images[0], prompt=p, num_inference_steps=2, seed=3) for p in prompts]
    inverted, made = run_program(
        server,
        certificate,
        session(use_jwt=True, steps=exchange(send(images[1], request_id=1))),
        session(TINY_APP, use_jwt=True, steps=exchange(*tiny)),
    )
    assert inverted[0]["result"]["request_id"] == 1
    assert_inverted(inverted[0], images[1])
    first, again, other = (pixels(reply) for reply in made)
    assert np.array_equal(first, again)  # the same request, the same image
    assert np.abs(first - other).mean() > 1.0  # another prompt, another image


def test_bad_requests_get_errors_naming_the_field_and_the_session_goes_on(
    server: ServerProcess, certificate: Certificate, images: list[Path], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image")
    requests = [
        send(request_id="no image"),
        send(corrupt, request_id="corrupt"),
        send(images[0], bogus=1, request_id="unknown input"),
        send(images[0], request_id="good"),
    ]
    (replies,) = run_program(server, certificate, session(use_jwt=False, steps=exchange(*requests)))
    missing, broken, unknown, good = replies
    assert (missing["error"], missing["field"]) == ("bad_message", "image_bytes"), missing
    assert broken["error"] == "bad_frame", broken
    assert (unknown["error"], unknown["field"]) == ("invalid_params", "bogus"), unknown
    assert "bogus" in unknown["reason"]
    assert [missing["request_id"], broken["request_id"]] == ["no image", "corrupt"]
    assert good["result"]["request_id"] == "good"
    assert_inverted(good, images[0])


def test_an_expired_or_another_apps_token_is_refused_and_the_server_serves_on(
    server: ServerProcess, certificate: Certificate, images: list[Path]
) -> None:
    expired = mint(server, certificate, "fast-turbo-diffusion", ttl=1)
    time.sleep(2)  # past its lifetime
    foreign = mint(server, certificate, "other-app", ttl=120)
    refused_expired, refused_foreign, served = run_program(
        server,
        certificate,
        session(use_jwt=True, token=expired, steps=[RECEIVE, RECEIVE]),
        session(use_jwt=True, token=foreign, steps=[RECEIVE, RECEIVE]),
        session(use_jwt=False, steps=exchange(send(images[2]))),
    )
    # The refusal as an error, then the server's normal close (1000): recv() gives None.
    assert refused_expired[0]["error"] == "unauthorized", refused_expired
    assert "expired" in refused_expired[0]["reason"]
    assert refused_foreign[0]["error"] == "forbidden", refused_foreign
    assert refused_expired[1] == refused_foreign[1] == {"end": True}
    assert_inverted(served[0], images[2])


@pytest.mark.parametrize(("max_buffering", "kept"), [(None, ["r8"]), (4, ["r5", "r6", "r7", "r8"])])
def test_max_buffering_keeps_that_many_requests_waiting(
    server: ServerProcess,
    certificate: Certificate,
    images: list[Path],
    max_buffering: int | None,
    kept: list[str],
) -> None:
    # The first request the model takes holds it for 1.5 s (delay_ms stays set) while
    # the rest arrive: the newest wait, the rest drop. That is r1, or a later one where
    # the burst pushed r1 out before the model took it.
    steps = [send(images[0], delay_ms=1500, request_id="r1")]
    steps += [send(images[0], request_id=f"r{n}") for n in range(2, 9)]
    steps += [{"receive": True, "until": "r8"}]
    plan = session(use_jwt=False, max_buffering=max_buffering, steps=steps)  # None: the default
    (replies,) = run_program(server, certificate, plan)
    results = [reply["result"]["request_id"] for reply in replies]
    first, waited = results[: -len(kept)], results[-len(kept) :]
    assert waited == kept, results
    assert len(first) <= 1 and all(int(r[1:]) < int(kept[0][1:]) for r in first), results
    assert replies[-1]["result"]["dropped_frames"] == 8 - len(results)
    assert_inverted(replies[-1], images[0])
