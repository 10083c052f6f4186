"""`realtime serve --log-format json`: every line an object, session lines carry the id."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
from datetime import datetime

import orjson
import pytest
from support import StartServer, eventually, serve_usage_error

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.websocket import ErrorMessage, FrameOutput, StreamClient
from realtime.server.logs import JsonFormatter
from session.logs import SessionLog

LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def parse(line: str) -> dict[str, object]:
    entry = orjson.loads(line)
    assert isinstance(entry, dict), line
    return entry


@pytest.mark.asyncio
async def test_a_json_log_is_one_object_a_line_and_session_lines_carry_the_id(
    start_server: StartServer,
) -> None:
    # `running_server` waits for "Uvicorn running on" and "ready: serving": they are
    # inside the JSON lines' messages, so it starting at all shows those lines came.
    server: ServerProcess = start_server("--model", "invert", "--log-format", "json")
    async with await StreamClient.connect(server.ws_url, model="invert") as client:
        session_id = client.ready.session_id
        await client.send_frame(b"not an image")
        error = await asyncio.wait_for(client.receive(), 30)
        assert isinstance(error, ErrorMessage) and error.code == "bad_frame"
        await client.send_frame(encode_image(gradient_image(), "jpeg"))
        output = await asyncio.wait_for(client.receive(), 30)
        assert isinstance(output, FrameOutput)
    closed = f"session {session_id}: closed"
    await eventually(lambda: any(closed in line for line in server.log), "the session's close")

    entries = [parse(line) for line in list(server.log)]
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
        assert datetime.fromisoformat(str(entry["time"])).tzinfo is not None, entry
        assert entry["level"] in LEVELS, entry
    messages = [str(entry["message"]) for entry in entries]
    assert any("Uvicorn running on" in message for message in messages)
    assert any(message.startswith("ready: serving invert") for message in messages)

    about_session = [
        entry for entry in entries if f"session {session_id}:" in str(entry["message"])
    ]
    assert all(entry.get("session_id") == session_id for entry in about_session), about_session
    said = [str(entry["message"]).split(": ", 1)[1] for entry in about_session]
    assert "connecting -> warming" in said
    assert "warming -> streaming" in said
    assert any(message.startswith("bad frame 1:") for message in said)
    assert any(message.startswith("closed (2 frames in, 1 out") for message in said)
    # Lines about no session carry no session id.
    others = [entry for entry in entries if "session_id" in entry]
    assert others == about_session


def test_the_json_formatter_adds_exception_text_and_session_id() -> None:
    logger = logging.getLogger("test.logs")
    handler = logging.handlers.BufferingHandler(capacity=100)  # keeps what it is given
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        try:
            raise ValueError("the model broke")
        except ValueError:
            SessionLog(logger, "abc123def456").exception("internal error")
        logger.warning("plain %s", "line")
    finally:
        logger.removeHandler(handler)

    failed, plain = (orjson.loads(JsonFormatter().format(record)) for record in handler.buffer)
    assert failed["session_id"] == "abc123def456"
    assert failed["message"] == "session abc123def456: internal error"
    assert (failed["level"], failed["logger"]) == ("ERROR", "test.logs")
    assert failed["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: the model broke" in failed["exception"]
    assert plain == {
        "time": plain["time"],
        "level": "WARNING",
        "logger": "test.logs",
        "message": "plain line",
    }
    assert datetime.fromisoformat(plain["time"]).utcoffset() is not None


def test_serve_refuses_an_unknown_log_format() -> None:
    assert "--log-format: invalid choice: 'xml'" in serve_usage_error("--log-format", "xml")
