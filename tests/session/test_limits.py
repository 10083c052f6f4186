"""Per-session limits, driven with explicit times: control message rate, handshake,
idle time, duration."""

import dataclasses

import orjson

from models.effects import INVERT
from session.limits import MessageRate, SessionLimits
from session.session import Session

PARAMS = orjson.dumps({"type": "params", "delay_ms": 1})


def started(limits: SessionLimits, at: float = 100.0) -> Session:
    session = Session("s1", INVERT, limits, started_at=at)
    session.pin()
    session.model_ready()
    return session


def test_message_rate_allows_a_burst_then_the_rate() -> None:
    rate = MessageRate(4.0, now=0.0)
    assert [rate.allow(0.0) for _ in range(5)] == [True] * 4 + [False]
    assert rate.allow(0.25)  # one token back after 1/4 s
    assert not rate.allow(0.25)
    assert [rate.allow(10.0) for _ in range(5)] == [True] * 4 + [False]  # capped at the burst


def test_messages_over_the_rate_are_refused_counted_and_not_applied() -> None:
    session = started(SessionLimits(max_messages_per_s=2))
    replies = [session.receive_text(PARAMS, 100.0)["type"] for _ in range(2)]
    assert replies == ["params", "params"]
    refused = session.receive_text(orjson.dumps({"type": "params", "delay_ms": 7}), 100.0)
    assert refused["code"] == "rate_limited"
    assert "2 control messages per second" in str(refused["message"])
    assert session.params.values["delay_ms"] == 1
    assert session.stats.refused_messages == 1
    assert session.receive_text(PARAMS, 100.5)["type"] == "params"


def test_a_session_idle_for_the_timeout_expires_and_activity_moves_the_deadline() -> None:
    session = started(SessionLimits(idle_timeout_s=10))
    assert session.next_deadline() == 110.0
    assert session.expiry(109.9) is None
    session.number_frame(105.0)  # a frame
    assert session.next_deadline() == 115.0
    session.receive_text(PARAMS, 112.0)  # params
    assert session.expiry(121.9) is None
    expired = session.expiry(122.0)
    assert expired is not None and expired.code == "idle_timeout"
    assert "10 s" in expired.message


def test_a_session_sent_no_first_frame_expires_at_its_handshake_timeout() -> None:
    session = started(SessionLimits(handshake_timeout_s=5, idle_timeout_s=300))
    assert session.next_deadline() == 400.0  # the clock starts once the client can send
    session.expect_input(101.0)
    assert session.next_deadline() == 106.0
    session.receive_text(PARAMS, 102.0)  # params are not a frame session's first input
    assert session.expiry(105.9) is None
    expired = session.expiry(106.0)
    assert expired is not None and expired.code == "handshake_timeout"
    assert expired.message == "no first frame in 5 s after ready"


def test_a_first_frame_ends_the_handshake() -> None:
    session = started(SessionLimits(handshake_timeout_s=5, idle_timeout_s=300))
    session.expect_input(101.0)
    session.number_frame(103.0)
    assert session.next_deadline() == 403.0
    assert session.expiry(200.0) is None


def test_a_type_to_image_session_ends_its_handshake_with_params() -> None:
    text_model = dataclasses.replace(INVERT, text_to_image=True)
    session = Session(
        "s1", text_model, SessionLimits(handshake_timeout_s=5), 100.0, text_input=True
    )
    session.pin()
    session.model_ready(100.0)
    session.expect_input(100.0)
    expired = session.expiry(105.0)
    assert expired is not None and expired.message == "no first params in 5 s after ready"
    session.receive_text(PARAMS, 104.0)
    assert session.expiry(105.0) is None


def test_a_refused_or_invalid_message_is_not_activity() -> None:
    session = started(SessionLimits(idle_timeout_s=10))
    session.receive_text(b'{"type": "params", "delay_ms": -1}', 105.0)
    assert session.next_deadline() == 110.0


def test_a_session_expires_at_its_longest_duration_however_active() -> None:
    session = started(SessionLimits(idle_timeout_s=10, max_duration_s=30))
    for now in range(101, 131):
        session.number_frame(float(now))
    expired = session.expiry(130.0)
    assert expired is not None and expired.code == "session_time_limit"


def test_no_limits_means_no_deadline() -> None:
    session = started(SessionLimits(idle_timeout_s=None, max_duration_s=None))
    assert session.next_deadline() is None
    assert session.expiry(1e9) is None


def test_closing_names_its_cause() -> None:
    session = started(SessionLimits(idle_timeout_s=1))
    cause = session.expiry(200.0)
    assert cause is not None
    assert session.stop_input(cause) == {
        "type": "closing",
        "code": "idle_timeout",
        "message": "no frame and no params for 1 s",
    }
    assert not session.accepts_frames
