"""Fuzzing the WebSocket stream of one real `realtime serve --model invert` with
hypothesis: random binary frames, random text and JSON (params updates valid and not),
and real images cut short or with bytes overwritten, all through one session. Every bad
message gets an error answer and changes nothing, a valid update is applied whole, and
the session stays open throughout.

Afterwards (the last test; tests run in file order) the one fuzzing session still
answers, no session is left once it is closed, memory has not run away, the log has no
ERROR line, and a well-behaved client streaming alongside the whole time got every frame
right (tests/fuzzing.py). Signalling has its own: test_fuzz_signalling.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import fuzzing
import orjson
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from support import StartServer
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from frames.codecs import decode_image, encode_image
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return fuzzing.start_fuzzed_server(start_server)


@pytest.fixture(scope="module")
def watch(server: ServerProcess) -> Iterator[fuzzing.Watch]:
    """Warm the WebSocket paths (params, a frame) once, then watch the server."""

    def warm_up() -> None:
        with FuzzSocket(server) as ws:
            ws.send_text('{"type": "params"}')
            ws.send_frame(encode_image(gradient_image(), "jpeg"))

    yield from fuzzing.watching(server, warm_up)


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
        self.ws = self._connection.enter_context(connect(self.url, **fuzzing.CLIENT_OPTIONS))
        self.opened += 1
        self.frames = 0
        ready = orjson.loads(self.ws.recv(fuzzing.REPLY_TIMEOUT_S))
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
            message = orjson.loads(self.ws.recv(fuzzing.REPLY_TIMEOUT_S))
            assert isinstance(message, dict), message
            if message.get("type") == "frame":
                image = self.ws.recv(fuzzing.REPLY_TIMEOUT_S)
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
def fuzz_socket(server: ServerProcess, watch: fuzzing.Watch) -> Iterator[FuzzSocket]:
    with FuzzSocket(server) as ws:
        yield ws


def check_error(reply: dict[str, Any], *codes: str) -> None:
    assert reply["type"] == "error", reply
    assert reply["code"] in codes, reply
    assert isinstance(reply["message"], str) and reply["message"], reply


@fuzzing.FUZZ
@given(data=st.binary(max_size=4096))
def test_random_binary_frames_are_bad_frames(fuzz_socket: FuzzSocket, data: bytes) -> None:
    reply = fuzz_socket.send_frame(data)
    check_error(reply, "bad_frame")
    assert reply["source_frame"] == fuzz_socket.frames
    fuzz_socket.assert_still_open()


@fuzzing.FUZZ
@given(
    text=st.one_of(
        st.text(max_size=300),
        fuzzing.json_values().map(json.dumps),
        fuzzing.params_messages().map(json.dumps),
        st.dictionaries(st.text(max_size=8), fuzzing.json_values(), max_size=4).map(json.dumps),
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


@fuzzing.FUZZ
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


# The aftermath


def test_after_the_fuzzing_nothing_leaked_and_the_bystander_was_served(
    server: ServerProcess, watch: fuzzing.Watch, fuzz_socket: FuzzSocket
) -> None:
    fuzz_socket.open()
    fuzz_socket.assert_still_open()
    assert fuzz_socket.opened == 1  # all the garbage went through one session
    fuzzing.check_aftermath(server, watch, close_own_sessions=fuzz_socket.close)
    fuzz_socket.open()  # and a new session still opens: it got `ready`
    fuzz_socket.close()
