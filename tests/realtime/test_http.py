"""GET /healthz, /v1/models and the static page, on an app served in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import httpx
import orjson
import pytest
from support import input_pixels, serve_app, wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from frames.frame import Pixels
from models.base import ModelEntry, ModelInfo, ModelInput
from models.effects import INVERT, load_invert
from models.registry import REGISTRY
from realtime.server.app import create_app
from realtime.server.config import ServerConfig

SLOW = ModelInfo("slow-to-load", "loads when the test says so", "effect", 8, 8)


class Passthrough:
    info = SLOW

    def warmup(self) -> None:
        pass

    def run(self, batch: Sequence[ModelInput]) -> list[Pixels]:
        return [input_pixels(item) for item in batch]


def test_healthz_is_503_while_loading_then_200() -> None:
    may_load = threading.Event()

    def load(device: str) -> Passthrough:
        may_load.wait(30)
        return Passthrough()

    registry = {"slow-to-load": ModelEntry(SLOW, load)}
    app = create_app(ServerConfig(models=("slow-to-load",), devices=("cpu",)), registry=registry)
    with serve_app(app) as url:
        loading = httpx.get(f"{url}/healthz")
        assert loading.status_code == 503
        assert loading.json()["status"] == "loading"
        assert loading.json()["models"] == {"slow-to-load-0": False}
        may_load.set()
        wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, "healthz 200")
        assert httpx.get(f"{url}/healthz").json() == {
            "status": "ok",
            "models": {"slow-to-load-0": True},
            "workers": [
                {
                    "name": "slow-to-load-0",
                    "model": "slow-to-load",
                    "device": "cpu",
                    "loaded": True,
                    "sessions": 0,
                }
            ],
            "sessions": 0,
            "max_sessions": 8,
        }


def test_a_model_that_fails_to_load_is_reported_and_stops_the_server() -> None:
    def load(device: str) -> Passthrough:
        raise OSError("no weights for 'slow-to-load' in the cache")

    stopped = threading.Event()
    app = create_app(
        ServerConfig(models=("slow-to-load",), devices=("cpu",)),
        registry={"slow-to-load": ModelEntry(SLOW, load)},
        on_load_failed=stopped.set,
    )
    with serve_app(app) as url:
        assert stopped.wait(30)
        health = httpx.get(f"{url}/healthz")
        assert health.status_code == 503
        assert health.json()["status"] == "failed"
        assert "no weights for 'slow-to-load'" in health.json()["error"]


def test_models_lists_the_registry_with_what_is_loaded() -> None:
    app = create_app(
        ServerConfig(models=("invert",), devices=("cpu",)),
        registry={"invert": ModelEntry(INVERT, load_invert), "tiny": REGISTRY["tiny"]},
    )
    with serve_app(app) as url:
        wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, "healthz 200")
        models = {model["id"]: model for model in httpx.get(f"{url}/v1/models").json()}
    assert set(models) == {"invert", "tiny"}
    invert = models["invert"]
    assert invert["loaded"] is True and models["tiny"]["loaded"] is False
    assert (invert["kind"], invert["width"], invert["height"]) == ("effect", 256, 256)
    assert invert["default_params"] == {
        "delay_ms": 0,
        "output_format": "jpeg",
        "output_quality": 90,
        "similarity_filter": 0.0,
    }
    assert invert["params"]["delay_ms"]["type"] == "integer"
    assert invert["params"]["output_format"]["choices"] == ["jpeg", "png", "webp"]
    assert models["tiny"]["kind"] == "img2img"
    assert {"prompt", "strength", "steps", "seed", "guidance_scale"} <= set(
        models["tiny"]["default_params"]
    )


def test_the_web_demo_is_served_at_the_root() -> None:
    app = create_app(ServerConfig(models=("invert",), devices=("cpu",)))
    with serve_app(app) as url:
        page = httpx.get(f"{url}/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]


def test_plain_http_on_the_websocket_endpoint_is_426_with_a_hint() -> None:
    app = create_app(ServerConfig(models=("invert",), devices=("cpu",)))
    with serve_app(app) as url:
        answer = httpx.get(f"{url}/v1/stream")
    assert answer.status_code == 426
    assert answer.headers["upgrade"] == "websocket"
    assert answer.json()["code"] == "bad_message"
    assert "connect to it with a WebSocket client" in answer.json()["message"]


@pytest.mark.parametrize("path", ["/nowhere", "/v1/nowhere", "/v1/models"])
def test_a_websocket_to_a_path_without_one_is_404(path: str) -> None:
    app = create_app(ServerConfig(models=("invert",), devices=("cpu",)))
    with serve_app(app) as url:
        ws_url = url.replace("http://", "ws://") + path
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(_connect(ws_url))
    assert refused.value.response.status_code == 404
    assert orjson.loads(refused.value.response.body)["code"] == "not_found"


async def _connect(url: str) -> None:
    async with connect(url, open_timeout=10):
        pass
