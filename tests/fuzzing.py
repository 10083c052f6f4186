"""What the fuzzing tests (tests/realtime/test_fuzz_*.py) share: hypothesis settings,
JSON and params strategies, and the watch over one `realtime serve` while it is fuzzed.

A fuzzing module starts its own server, warms the paths it fuzzes (`watching`), and
from then on a well-behaved client (the `Bystander`) streams alongside the fuzzing in a
thread. Its last test is the aftermath (`check_aftermath`): the bystander got every
frame right, no session is left, memory has not run away and nothing was logged as an
error.

Sync clients (websockets.sync, httpx): no event loop to share with hypothesis.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from support import StartServer, wait_until
from websockets.sync.client import connect

from frames.codecs import decode_image, encode_image
from frames.samples import noise_image
from realtime.bench.harness import ServerProcess

FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the checkout
    suppress_health_check=[HealthCheck.too_slow],
)
REPLY_TIMEOUT_S = 15
CLIENT_OPTIONS: dict[str, Any] = {"max_size": 2**24, "ping_interval": None}
"""No keepalive pings: websockets draws their payload from the global `random`, which
hypothesis reports as misuse when the bystander's thread does it during a draw."""
RSS_GROWTH_LIMIT = 100 * 2**20
"""Generous (a run adds about 10 MiB): what the fuzzing may add to the server's resident
memory, caches and allocator arenas included."""


# The server and what runs alongside the fuzzing


def start_fuzzed_server(start_server: StartServer) -> ServerProcess:
    """`realtime serve --model invert`, for a module-scoped `server` fixture: room for
    the bystander and the fuzzing's sessions, and no rate limit to speak of (hypothesis
    sends as fast as it can; the rate limit has its own tests)."""
    return start_server(
        "--model", "invert", "--max-sessions", "16", "--max-messages-per-s", "100000"
    )  # fmt: skip


@dataclass
class Bystander:
    """A well-behaved client in a thread: sends a PNG, waits for its exact inverse, repeats."""

    url: str
    good_frames: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        images = [noise_image(seed=seed) for seed in range(3)]
        encoded = [encode_image(image, "png") for image in images]
        try:
            with connect(f"{self.url}/v1/stream?model=invert", **CLIENT_OPTIONS) as ws:
                assert orjson.loads(ws.recv(REPLY_TIMEOUT_S))["type"] == "ready"
                ws.send(orjson.dumps({"type": "params", "output_format": "png"}).decode())
                assert orjson.loads(ws.recv(REPLY_TIMEOUT_S))["type"] == "params"
                number = 0
                while not self.stop.is_set():
                    number += 1
                    image = images[number % len(images)]
                    ws.send(encoded[number % len(encoded)])
                    message = orjson.loads(ws.recv(REPLY_TIMEOUT_S))
                    assert message["type"] == "frame", message
                    assert message["source_frame"] == number, message
                    output = decode_image(ws.recv(REPLY_TIMEOUT_S))
                    assert np.array_equal(output, 255 - image), f"frame {number} is wrong"
                    self.good_frames += 1
                    self.stop.wait(0.01)
        except Exception as error:
            self.failures.append(f"{type(error).__name__}: {error}")


@dataclass
class Watch:
    bystander: Bystander
    thread: threading.Thread
    rss_before: int
    log_before: int


def watching(server: ServerProcess, warm_up: Callable[[], object]) -> Iterator[Watch]:
    """For a module-scoped `watch` fixture (`yield from watching(...)`): warm the paths
    the module fuzzes once (`warm_up`), note memory and the log, start the bystander;
    stop it at the end."""
    warm_up()
    wait_until(lambda: sessions(server) == 0, "the warm-up sessions to end")
    bystander = Bystander(server.ws_url)
    thread = threading.Thread(target=bystander.run, daemon=True)
    thread.start()
    wait_until(lambda: bystander.good_frames or bystander.failures, "the bystander's first frame")
    yield Watch(bystander, thread, server.rss_bytes(), len(server.log))
    bystander.stop.set()
    thread.join(REPLY_TIMEOUT_S)


def sessions(server: ServerProcess) -> int:
    count = httpx.get(f"{server.http_url}/healthz", timeout=10).json()["sessions"]
    assert isinstance(count, int)
    return count


def check_aftermath(
    server: ServerProcess, watch: Watch, close_own_sessions: Callable[[], object] = lambda: None
) -> None:
    """The bystander was served throughout and the server still runs; then, once the
    module's own sessions are closed (`close_own_sessions`), no session is left, memory
    grew less than RSS_GROWTH_LIMIT, and the log since the warm-up has no ERROR line and
    no traceback."""
    bystander = watch.bystander
    assert watch.thread.is_alive(), bystander.failures
    bystander.stop.set()
    watch.thread.join(REPLY_TIMEOUT_S)
    assert bystander.failures == []
    assert bystander.good_frames > 1

    assert server.process.poll() is None
    close_own_sessions()
    wait_until(lambda: sessions(server) == 0, "every session to end")
    growth = server.rss_bytes() - watch.rss_before
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.0f} MiB"
    during = server.log[watch.log_before :]
    failures = [line for line in during if " ERROR " in line or "Traceback" in line]
    assert failures == []


# Strategies


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),  # beyond 64 bits too: orjson refuses those
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40),
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=5)
            | st.dictionaries(st.text(max_size=12), children, max_size=5)
        ),
        max_leaves=20,
    )


PARAM_NAMES = st.sampled_from(["delay_ms", "output_format", "output_quality", "type", "prompt"])


def params_messages() -> st.SearchStrategy[dict[str, Any]]:
    """Params updates, valid and not: known and unknown fields, any JSON value."""
    values = st.one_of(
        json_values(),
        st.sampled_from(["jpeg", "png", "webp", "gif", ""]),
        st.integers(-5, 120),
    )
    fields = st.dictionaries(PARAM_NAMES | st.text(max_size=8), values, max_size=4)
    return fields.map(lambda update: {**_gentle(update), "type": "params"})


def _gentle(update: dict[str, Any]) -> dict[str, Any]:
    # A valid delay_ms is up to 10 s a frame: keep the fuzzing session quick.
    delay = update.get("delay_ms")
    if isinstance(delay, int) and not isinstance(delay, bool) and 0 <= delay <= 10_000:
        update["delay_ms"] = delay % 20
    return update
