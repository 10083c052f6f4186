"""The wire vocabulary: messages survive the trip, and docs/protocol.md's tables say
what session/protocol.py defines."""

from __future__ import annotations

import re

import pytest
from support import PROTOCOL_DOC, doc_table

from session.protocol import (
    HOPS,
    HTTP_STATUSES,
    SESSION_GOES_ON,
    CloseCode,
    Closing,
    ErrorCode,
    ErrorMessage,
    FrameMessage,
    MessageType,
    ParamsMessage,
    Queued,
    Ready,
    ServerMessage,
    close_code,
    http_status,
    parse_server_message,
)

HTTP_ONLY = {ErrorCode.BAD_OFFER, ErrorCode.NOT_FOUND, ErrorCode.TOO_LARGE, ErrorCode.VIEWER_LIMIT}
"""Answers to signalling requests, never sent on an open session."""


@pytest.mark.parametrize(
    "message",
    [
        Ready("abc", "invert", 256, 256, {"delay_ms": 0}),
        Ready("abc", "sd-turbo", 512, 512, {}, random_weights=True),
        ParamsMessage({"prompt": "an owl"}),
        FrameMessage(3, dict.fromkeys(HOPS, 1.5), 2, 1),
        ErrorMessage(ErrorCode.INVALID_PARAMS, "no such param", field="nope"),
        ErrorMessage(ErrorCode.BAD_FRAME, "not an image", source_frame=7),
        Closing(ErrorCode.SHUTTING_DOWN, "the server is shutting down"),
        Queued(2),
    ],
)
def test_every_message_parses_back_to_itself(message: ServerMessage) -> None:
    assert parse_server_message(message.to_wire()) == message


def test_ready_says_random_weights_only_when_true() -> None:
    assert "random_weights" not in Ready("a", "m", 8, 8, {}).to_wire()
    assert Ready("a", "m", 8, 8, {}, random_weights=True).to_wire()["random_weights"] is True


def test_unknown_and_malformed_messages_are_refused() -> None:
    with pytest.raises(ValueError, match="unexpected message"):
        parse_server_message({"type": "surprise"})
    with pytest.raises(ValueError, match="malformed queued"):
        parse_server_message({"type": "queued"})


def test_the_docs_list_every_message_type() -> None:
    documented = {row[0] for row in doc_table("### Message types")}
    assert documented == {kind.value for kind in MessageType}


def test_the_docs_error_table_matches_the_codes() -> None:
    rows = doc_table("### Error codes")
    assert sorted(row[0] for row in rows) == sorted(code.value for code in ErrorCode)
    for code, closing, status in rows:
        if closing == "—":
            assert code in SESSION_GOES_ON | HTTP_ONLY, f"{code} closes the session"
        else:
            assert code not in SESSION_GOES_ON, f"{code} does not close the session"
            assert int(closing) == close_code(code), code
        if status == "—":
            assert code not in HTTP_STATUSES, f"{code} is an HTTP answer"
        else:
            assert int(status) == http_status(code), code


def test_the_docs_close_codes_are_the_codes_used() -> None:
    documented = {int(row[0]) for row in doc_table("## Close codes")}
    assert documented == {code.value for code in CloseCode}


def test_the_docs_name_the_hops() -> None:
    assert {row[0] for row in doc_table("### Hops")} == set(HOPS)


def test_other_tables_in_the_docs_agree_on_close_codes() -> None:
    """Rows elsewhere that pair a `code` with a close code (the refusals, `closing`)."""
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    pairs = re.findall(r"^\| [^|]*\| `([a-z_]+)`[^|]*\| (10\d\d)\b", text, re.MULTILINE)
    pairs += re.findall(r"^\| `([a-z_]+)` \|[^|]*\| (10\d\d) \|", text, re.MULTILINE)
    assert len(pairs) >= 6
    for code, closing in pairs:
        assert close_code(code) == int(closing), code
