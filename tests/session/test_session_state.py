"""The Session state machine, driven directly: no sockets, threads or models."""

import dataclasses

import numpy as np
import orjson
import pytest

from frames.frame import Frame
from models.effects import INVERT
from session.errors import InvalidParams
from session.jobs import Job
from session.session import Session, SessionState


def make_session() -> Session:
    session = Session("s1", INVERT)
    session.pin()
    session.model_ready()
    return session


def arrive(session: Session, now: float = 0.0) -> Frame:
    index = session.number_frame(now)
    frame = Frame(np.full((2, 2, 3), index, np.uint8), index, now, {"decode": 1.0})
    session.offer_frame(frame)
    return frame


def finish(session: Session, job: Job) -> None:
    pixels = job.frame.pixels
    assert pixels is not None
    session.finish_job(255 - pixels, started_at=job.frame.received_at + 0.011, model_ms=5.0)


def state_of(session: Session) -> SessionState:
    """The state, read afresh: mypy would keep an asserted `session.state` narrowed
    across the calls that change it."""
    return session.state


def test_lifecycle_to_ready() -> None:
    session = Session("s1", INVERT)
    assert state_of(session) is SessionState.CONNECTING
    session.pin()
    assert state_of(session) is SessionState.WARMING
    ready = session.model_ready()
    assert state_of(session) is SessionState.STREAMING
    assert ready == {
        "type": "ready",
        "session_id": "s1",
        "model": "invert",
        "width": 256,
        "height": 256,
        "params": {
            "delay_ms": 0,
            "output_format": "jpeg",
            "output_quality": 90,
            "similarity_filter": 0.0,
        },
    }


def test_frames_are_numbered_in_arrival_order() -> None:
    session = make_session()
    assert [arrive(session).index for _ in range(3)] == [1, 2, 3]


def test_frames_wait_while_warming_and_only_the_newest_runs() -> None:
    session = Session("s1", INVERT)
    session.pin()
    arrive(session)
    arrive(session)
    assert session.next_job() is None  # not streaming yet
    session.model_ready()
    job = session.next_job()
    assert job is not None and job.frame.index == 2
    assert session.dropped_frames == 1


def test_one_frame_in_the_model_at_a_time_and_newest_wins() -> None:
    session = make_session()
    arrive(session)
    job = session.next_job()
    assert job is not None and job.frame.index == 1
    for _ in range(5):
        arrive(session)
    assert session.next_job() is None  # frame 1 is still in the model
    assert session.dropped_frames == 4  # frames 2-5 were replaced by 6
    finish(session, job)
    next_job = session.next_job()
    assert next_job is not None and next_job.frame.index == 6


def test_unread_outputs_are_replaced_and_counted() -> None:
    session = make_session()
    for _ in range(3):
        arrive(session)
        job = session.next_job()
        assert job is not None
        finish(session, job)
    output = session.next_output()
    assert output is not None and output.frame.index == 3
    message = session.output_message(output, encode_ms=2.0)
    assert message["source_frame"] == 3
    assert message["dropped_frames"] == 2
    assert message["timings_ms"] == {
        "queue": 10.0,
        "decode": 1.0,
        "control": 0.0,
        "model": 5.0,
        "encode": 2.0,
    }
    session.output_sent(output)
    assert session.next_output() is None


def test_every_frame_is_accounted_for() -> None:
    session = make_session()
    sent = 0
    for step in range(50):
        arrive(session)
        if step % 3 == 0 and (job := session.next_job()):
            finish(session, job)
        if step % 7 == 0 and (output := session.next_output()):
            session.output_message(output)
            session.output_sent(output)
            sent += 1
    session.close()
    assert session.stats.frames_received == 50
    assert session.stats.frames_sent == sent
    # Nothing is in flight here, so every frame was either sent or dropped.
    assert sent + session.dropped_frames == 50


def test_params_message_updates_and_answers_all_values() -> None:
    session = make_session()
    reply = session.receive_text(b'{"type": "params", "delay_ms": 20}', 0.0)
    assert reply == {
        "type": "params",
        "params": {
            "delay_ms": 20,
            "output_format": "jpeg",
            "output_quality": 90,
            "similarity_filter": 0.0,
        },
    }
    arrive(session)
    job = session.next_job()
    assert job is not None and job.params["delay_ms"] == 20


@pytest.mark.parametrize(
    ("text", "code", "field"),
    [
        ("{not json", "bad_message", None),
        ("[1, 2]", "bad_message", None),
        ('{"type": "dance"}', "bad_message", "type"),
        ('{"type": "params", "delay_ms": -1}', "invalid_params", "delay_ms"),
        ('{"type": "params", "prompt": "x"}', "invalid_params", "prompt"),
    ],
)
def test_bad_control_messages_get_an_error_and_change_nothing(
    text: str, code: str, field: str | None
) -> None:
    session = make_session()
    reply = session.receive_text(text, 0.0)
    assert reply["type"] == "error"
    assert reply["code"] == code
    assert reply.get("field") == field
    assert session.params.values["delay_ms"] == 0
    assert session.state is SessionState.STREAMING


def test_a_bad_frame_is_reported_with_its_number() -> None:
    session = make_session()
    index = session.number_frame(0.0)
    reply = session.reject_frame(index, "not a JPEG")
    assert reply == {
        "type": "error",
        "code": "bad_frame",
        "message": "not a JPEG",
        "source_frame": 1,
    }
    assert session.stats.bad_frames == 1
    assert arrive(session).index == 2


def test_a_model_error_goes_through_the_output_slot_and_the_session_goes_on() -> None:
    session = make_session()
    arrive(session)
    job = session.next_job()
    assert job is not None
    session.fail_job("RuntimeError: boom")
    output = session.next_output()
    assert output is not None
    assert session.output_message(output) == {
        "type": "error",
        "code": "model_error",
        "message": "RuntimeError: boom",
        "source_frame": 1,
    }
    arrive(session)
    assert session.next_job() is not None


def test_a_failed_job_carries_the_workers_error_code_and_counts_as_failed() -> None:
    session = make_session()
    arrive(session)
    assert session.next_job() is not None
    session.fail_job("the model was reloaded", "model_restarted")
    output = session.next_output()
    assert output is not None
    message = session.output_message(output)
    assert (message["code"], message["source_frame"]) == ("model_restarted", 1)
    session.output_sent(output)
    assert session.stats.failed_frames == 1


def test_closing_mid_inference_drains_until_the_model_returns() -> None:
    session = make_session()
    arrive(session)
    job = session.next_job()
    assert job is not None
    arrive(session)
    session.close()
    assert state_of(session) is SessionState.DRAINING
    assert session.next_job() is None
    finish(session, job)
    assert state_of(session) is SessionState.CLOSED
    assert session.next_output() is None
    assert session.dropped_frames == 2


def test_closing_idle_closes_at_once() -> None:
    session = make_session()
    session.close()
    assert session.state is SessionState.CLOSED
    arrive(session)
    assert session.next_job() is None


def test_replies_are_json_serialisable() -> None:
    session = make_session()
    orjson.dumps(session.receive_text('{"type": "params"}', 0.0))


def test_an_output_taken_but_never_sent_counts_as_dropped_when_the_transport_ends() -> None:
    session = make_session()
    arrive(session)
    job = session.next_job()
    assert job is not None
    finish(session, job)
    output = session.next_output()
    assert output is not None
    assert not session.is_settled  # being sent
    session.close()  # the client vanished mid-send
    session.output_sent(output)  # a late confirmation changes nothing
    assert session.stats.frames_sent == 0
    assert session.dropped_frames == 1
    assert session.stats.frames_received == session.stats.frames_sent + session.dropped_frames


def test_a_type_to_image_session_asks_for_an_image_at_ready_and_on_each_change() -> None:
    text_model = dataclasses.replace(INVERT, text_to_image=True)
    session = Session("s1", text_model, text_input=True)
    session.pin()
    session.model_ready(0.5)
    first = session.next_job()
    assert first is not None and (first.frame.pixels, first.frame.index) == (None, 1)
    session.fail_job("boom")
    session.receive_text(b'{"type": "params"}', 1.0)  # a read: nothing changes
    assert session.next_job() is None
    session.receive_text(b'{"type": "params", "delay_ms": 5}', 2.0)
    session.receive_text(b'{"type": "params", "delay_ms": 6}', 3.0)  # replaces it
    job = session.next_job()
    assert job is not None
    assert (job.frame.pixels, job.frame.index, job.params["delay_ms"]) == (None, 3, 6)
    assert session.dropped_frames == 1
    session.finish_job(np.zeros((2, 2, 3), np.uint8), started_at=3.0, model_ms=1.0)
    output = session.next_output()
    assert output is not None and session.output_message(output)["source_frame"] == 3

    arrive(session, 4.0)  # from the first frame on, params only change params
    session.receive_text(b'{"type": "params", "delay_ms": 7}', 5.0)
    job = session.next_job()
    assert job is not None and job.frame.pixels is not None


def test_a_session_that_sends_frames_makes_nothing_from_params() -> None:
    session = make_session()
    session.receive_text(b'{"type": "params", "delay_ms": 5}', 1.0)
    assert session.next_job() is None


def test_a_frame_still_decoding_when_the_transport_ends_counts_as_dropped_once() -> None:
    session = make_session()
    index = session.number_frame(0.0)  # its decode is under way...
    session.close()  # ...when the client vanishes
    assert session.dropped_frames == 1
    # Should the decode still finish, the frame is not counted again.
    session.offer_frame(Frame(np.zeros((2, 2, 3), np.uint8), index, 0.0, {"decode": 1.0}))
    session.reject_frame(index, "corrupt")
    assert session.dropped_frames == 1 and session.stats.bad_frames == 0
    assert session.stats.frames_received == session.dropped_frames


def test_a_reference_rides_with_each_job_from_the_next_one_on() -> None:
    session = Session("s1", dataclasses.replace(INVERT, takes_reference=True))
    session.pin()
    session.model_ready()
    arrive(session)
    first = session.next_job()
    assert first is not None and first.reference is None
    reference = np.zeros((4, 4, 3), np.uint8)
    session.set_reference(reference, now=1.0)  # the frame in the model keeps the one before
    assert first.reference is None
    finish(session, first)
    arrive(session)
    second = session.next_job()
    assert second is not None and second.reference is reference
    finish(session, second)
    session.set_reference(None, now=2.0)
    arrive(session)
    third = session.next_job()
    assert third is not None and third.reference is None


def test_a_model_without_an_ip_adapter_refuses_a_reference_naming_it() -> None:
    session = make_session()
    with pytest.raises(InvalidParams) as refused:
        session.set_reference(np.zeros((4, 4, 3), np.uint8), now=1.0)
    assert refused.value.field == "reference"
    session.set_reference(None, now=1.0)  # clearing none is no error
    assert session.reference is None
