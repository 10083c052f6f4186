"""Fuzzing one real `realtime serve --model invert` with hypothesis: garbage over the
WebSocket (bytes, JSON, text, broken images) and into WebRTC signalling (JSON offers,
WHIP SDP). Every bad input gets an error answer, the server never fails (no 500, no
ERROR line), and afterwards no session is left, memory has not run away, and a
well-behaved client streaming alongside the whole time got every frame right.

Sync tests, sync clients (websockets.sync, httpx): no event loop to share with
hypothesis. The tests run in file order; the last one checks the aftermath.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from aiortc import RTCPeerConnection
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support import StartServer, wait_until
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from frames.codecs import decode_image, encode_image
from frames.samples import gradient_image, noise_image
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


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    # Hypothesis sends messages as fast as it can; the rate limit has its own tests.
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


@pytest.fixture(scope="module")
def watch(server: ServerProcess, real_offer: str) -> Iterator[Watch]:
    """Warm every path once, note memory and the log, start the bystander."""
    with FuzzSocket(server) as ws:
        ws.send_text('{"type": "params"}')
        ws.send_frame(encode_image(gradient_image(), "jpeg"))
    with httpx.Client(base_url=server.http_url, timeout=REPLY_TIMEOUT_S) as http:
        check_signalling_answer(http, http.post("/v1/webrtc/offer", content=b"{}"))
        check_signalling_answer(http, post_whip(http, real_offer))
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


# WebSocket


class FuzzSocket:
    """One fuzzing session, kept open across examples (bad input must not end it);
    reopened only if an example did end it, so that the next example starts clean."""

    def __init__(self, server: ServerProcess) -> None:
        self.url = f"{server.ws_url}/v1/stream?model=invert"
        self.ws: ClientConnection | None = None
        self._connection = contextlib.ExitStack()
        self.frames = 0
        self.opened = 0

    def __enter__(self) -> FuzzSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._connection.close()
        self.ws = None

    def open(self) -> ClientConnection:
        if self.ws is not None and self.ws.state is State.OPEN:
            return self.ws
        self.close()
        self.ws = self._connection.enter_context(connect(self.url, **CLIENT_OPTIONS))
        self.opened += 1
        self.frames = 0
        ready = orjson.loads(self.ws.recv(REPLY_TIMEOUT_S))
        assert ready["type"] == "ready", ready
        return self.ws

    def send_text(self, text: str) -> dict[str, Any]:
        """Send a text message; returns the server's reply to it."""
        ws = self.open()
        ws.send(text)
        return self._next_reply()

    def send_frame(self, data: bytes) -> dict[str, Any]:
        """Send a binary message; returns the `bad_frame` error or the `frame` output
        that came of it (outputs of earlier frames are skipped)."""
        ws = self.open()
        ws.send(data)
        self.frames += 1
        while True:
            message = self._next_reply(skip_outputs=False)
            if message.get("source_frame") == self.frames:
                return message

    def _next_reply(self, *, skip_outputs: bool = True) -> dict[str, Any]:
        assert self.ws is not None
        while True:
            message = orjson.loads(self.ws.recv(REPLY_TIMEOUT_S))
            assert isinstance(message, dict), message
            if message.get("type") == "frame":
                image = self.ws.recv(REPLY_TIMEOUT_S)
                assert isinstance(image, bytes)
                message["image"] = image
                if skip_outputs:
                    continue
            return message

    def assert_still_open(self) -> None:
        """The session survived: it still answers on the same connection."""
        assert self.ws is not None and self.ws.state is State.OPEN
        assert self.send_text('{"type": "params"}')["type"] == "params"


@pytest.fixture(scope="module")
def fuzz_socket(server: ServerProcess, watch: Watch) -> Iterator[FuzzSocket]:
    with FuzzSocket(server) as ws:
        yield ws


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


def check_error(reply: dict[str, Any], *codes: str) -> None:
    assert reply["type"] == "error", reply
    assert reply["code"] in codes, reply
    assert isinstance(reply["message"], str) and reply["message"], reply


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_binary_frames_are_bad_frames(fuzz_socket: FuzzSocket, data: bytes) -> None:
    reply = fuzz_socket.send_frame(data)
    check_error(reply, "bad_frame")
    assert reply["source_frame"] == fuzz_socket.frames
    fuzz_socket.assert_still_open()


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=300),
        json_values().map(json.dumps),
        params_messages().map(json.dumps),
        st.dictionaries(st.text(max_size=8), json_values(), max_size=4).map(json.dumps),
    )
)
def test_random_text_messages_get_one_answer_each(fuzz_socket: FuzzSocket, text: str) -> None:
    before = fuzz_socket.send_text('{"type": "params"}')["params"]
    reply = fuzz_socket.send_text(text)
    if reply["type"] == "params":  # a valid update (or a read)
        update = orjson.loads(text)
        update.pop("type")
        assert reply["params"] == {**before, **update}
    else:
        check_error(reply, "bad_message", "invalid_params")
        # All or nothing: a refused update changed nothing.
        assert fuzz_socket.send_text('{"type": "params"}')["params"] == before
    fuzz_socket.assert_still_open()


ENCODED = {
    image_format: encode_image(gradient_image(96, 64, seed=1), image_format, 80)
    for image_format in ("jpeg", "png", "webp")
}


@st.composite
def broken_images(draw: st.DrawFn) -> bytes:
    """A real JPEG, PNG or WebP, cut short and perhaps with a few bytes overwritten."""
    image = ENCODED[draw(st.sampled_from(sorted(ENCODED)))]
    data = bytearray(image[: draw(st.integers(0, len(image) - 1))])
    for _ in range(draw(st.integers(0, 3))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@FUZZ
@given(data=broken_images())
def test_broken_images_are_bad_frames_or_whole_outputs(
    fuzz_socket: FuzzSocket, data: bytes
) -> None:
    fuzz_socket.send_text('{"type": "params", "delay_ms": 0}')  # whatever fuzzing set before
    reply = fuzz_socket.send_frame(data)
    event(f"answered with {reply['type']}")
    if reply["type"] == "frame":  # a decoder may fill in what is missing
        assert decode_image(reply["image"]).shape == (256, 256, 3)
    else:
        check_error(reply, "bad_frame")
    assert reply["source_frame"] == fuzz_socket.frames
    fuzz_socket.assert_still_open()


# WebRTC signalling


@pytest.fixture(scope="module")
def real_offer() -> str:
    """A real aiortc offer (a video transceiver and the control channel), to mutate."""

    async def make() -> str:
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="sendrecv")
        pc.createDataChannel("control")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = str(pc.localDescription.sdp)
        await pc.close()
        return sdp

    return asyncio.run(make())


SDP_KEYS = st.sampled_from([*"vosctmabcik", "a=rtpmap", "a=fmtp", "a=ssrc", "a=candidate"])


@st.composite
def sdp_like(draw: st.DrawFn) -> str:
    """Text that passes the server's first look at an offer (v=0 ... m=) and goes on
    to aiortc's parser: SDP-shaped lines with random values."""
    lines = ["v=0"]
    for _ in range(draw(st.integers(1, 12))):
        key = draw(SDP_KEYS)
        value = draw(
            st.sampled_from(
                [
                    "video 9 UDP/TLS/RTP/SAVPF 96",
                    "audio 9 RTP/AVP 0",
                    "application 9 UDP/DTLS/SCTP webrtc-datachannel",
                    "96 VP8/90000",
                    "ice-ufrag:abcd",
                    "ice-pwd:abcdefghijklmnopqrstuvwx",
                    "setup:actpass",
                    "mid:0",
                    "",
                ]
            )
            | st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40)
        )
        separator = ":" if key.startswith("a=") else "=" if len(key) == 1 else ""
        lines.append(f"{key}{separator}{value}")
    if not any(line.startswith("m=") for line in lines):
        lines.insert(draw(st.integers(1, len(lines))), "m=" + draw(st.text(max_size=30)))
    newline = draw(st.sampled_from(["\r\n", "\n"]))
    return newline.join(lines) + newline


@st.composite
def mutated_offers(draw: st.DrawFn, offer: str) -> str:
    """A real offer with lines dropped, lines garbled, or cut short."""
    lines = offer.split("\r\n")
    for _ in range(draw(st.integers(0, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        if draw(st.booleans()):
            del lines[index]
        else:
            lines[index] = lines[index][: draw(st.integers(0, len(lines[index])))] + draw(
                st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=10)
            )
        if not lines:
            break
    text = "\r\n".join(lines)
    return text[: draw(st.integers(0, len(text)))] if draw(st.booleans()) else text


def offer_texts(offer: str) -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=200), sdp_like(), mutated_offers(offer))


def post_whip(http: httpx.Client, sdp: str | bytes) -> httpx.Response:
    return http.post(
        "/v1/whip?model=invert", content=sdp, headers={"Content-Type": "application/sdp"}
    )


def check_signalling_answer(http: httpx.Client, response: httpx.Response) -> int:
    """A bad offer gets a 4xx (or 503) JSON error, never a 500. A mutated offer that
    is still usable SDP gets its answer: that session is ended at once."""
    status = response.status_code
    if status in (200, 201):
        if status == 201:
            assert response.headers["Content-Type"].startswith("application/sdp")
            session_id = response.headers["Location"].rsplit("/", 1)[1]
            answer = response.text
        else:
            body = response.json()
            session_id, answer = body["session_id"], body["sdp"]
        assert answer.startswith("v=0"), answer
        assert http.delete(f"/v1/whip/{session_id}").status_code == 200
        return status
    assert 400 <= status < 500 or status == 503, (status, response.text)
    body = response.json()
    assert body["type"] == "error", body
    assert isinstance(body["code"], str) and isinstance(body["message"], str), body
    return status


@pytest.fixture(scope="module")
def http(server: ServerProcess, watch: Watch) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=REPLY_TIMEOUT_S) as client:
        yield client


@FUZZ
@given(data=st.data())
def test_bad_json_offers_get_4xx_json_errors(
    http: httpx.Client, real_offer: str, data: st.DataObject
) -> None:
    sdp = offer_texts(real_offer) | json_values()
    offers = st.fixed_dictionaries(
        {"type": st.just("offer") | json_values(), "sdp": sdp},
        optional={
            "model": st.just("invert") | json_values(),
            "params": params_messages() | json_values(),
        },
    )
    body = data.draw(
        st.one_of(
            st.binary(max_size=300),
            json_values().map(lambda value: json.dumps(value).encode()),
            offers.map(lambda offer: json.dumps(offer).encode()),
        )
    )
    event(f"HTTP {check_signalling_answer(http, http.post('/v1/webrtc/offer', content=body))}")


@FUZZ
@given(data=st.data())
def test_bad_whip_offers_get_4xx_json_errors(
    http: httpx.Client, real_offer: str, data: st.DataObject
) -> None:
    body = data.draw(st.one_of(offer_texts(real_offer).map(str.encode), st.binary(max_size=300)))
    event(f"HTTP {check_signalling_answer(http, post_whip(http, body))}")


ICE = "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
DTLS = "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\n"
VP8 = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\na=rtcp-mux\r\n"
AIORTC_CRASHERS = {
    # What the fuzzing found: SDP on which aiortc raises something other than
    # ValueError (a 500 before), or on which its close() then fails too (a session
    # slot leaked before: the peer's close stopped half-way).
    "m-line-unparsed": "v=0\r\nm=\r\n",  # AssertionError
    "bad-connection-address": "v=0\r\nc=\r\nm=video 9 RTP/AVP 96\r\n",  # AssertionError
    "rtpmap-without-clock-rate": (  # IndexError
        "v=0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n"
    ),
    "fmtp-for-unknown-payload": (  # RuntimeError: coroutine raised StopIteration
        "v=0\r\nm=video 9 RTP/AVP 96\r\na=fmtp:97 x=1\r\n"
    ),
    "no-dtls": f"v=0\r\n{VP8}{ICE}",  # AttributeError
    "bundle-names-a-missing-mid": (  # AttributeError in createAnswer, then in close()
        "v=0\r\na=group:BUNDLE 0 1\r\n"
        f"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n{ICE}{DTLS}"
    ),
}


@pytest.mark.parametrize("endpoint", ["whip", "offer"])
@pytest.mark.parametrize("sdp", AIORTC_CRASHERS.values(), ids=AIORTC_CRASHERS.keys())
def test_offers_that_trip_aiortc_are_bad_offers(
    server: ServerProcess, http: httpx.Client, endpoint: str, sdp: str
) -> None:
    before = sessions(server)  # the bystander's and the fuzzing socket's
    if endpoint == "whip":
        response = post_whip(http, sdp)
    else:
        response = http.post("/v1/webrtc/offer", json={"type": "offer", "sdp": sdp})
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["code"], body["field"]) == ("bad_offer", "sdp")
    assert body["message"].startswith("not a usable SDP offer: ")
    assert sessions(server) == before  # its slot was given back before the answer


# The aftermath


def test_after_the_fuzzing_nothing_leaked_and_the_bystander_was_served(
    server: ServerProcess, watch: Watch, fuzz_socket: FuzzSocket
) -> None:
    fuzz_socket.open()
    fuzz_socket.assert_still_open()
    assert fuzz_socket.opened == 1  # all the garbage went through one session
    bystander = watch.bystander
    assert watch.thread.is_alive(), bystander.failures
    bystander.stop.set()
    watch.thread.join(REPLY_TIMEOUT_S)
    assert bystander.failures == []
    assert bystander.good_frames > 1

    assert server.process.poll() is None
    fuzz_socket.close()
    wait_until(lambda: sessions(server) == 0, "every session to end")
    growth = server.rss_bytes() - watch.rss_before
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.0f} MiB"
    during = server.log[watch.log_before :]
    failures = [line for line in during if " ERROR " in line or "Traceback" in line]
    assert failures == []
    fuzz_socket.open()  # and a new session still opens: it got `ready`
    fuzz_socket.close()
