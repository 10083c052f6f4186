"""Session: one client's stream, as a sans-I/O state machine.

Transports feed it events (a frame arrived, a text message arrived, the model
finished a job, the transport closed), each with `now` from a monotonic clock,
and send what it returns. It holds the backpressure rules of the data path:

1. one latest-frame slot in: a new frame replaces one that has not started;
2. at most one frame of this session inside the model (`next_job` hands out
   nothing while a job is in flight);
3. one latest-output slot out: an output the transport has not taken is
   replaced by a newer one;
and counts every frame that does not become an output.

Lifecycle: CONNECTING -> WARMING (pinned to a worker) -> STREAMING (model warm,
`ready` sent) -> DRAINING (transport gone, a job still in the model) -> CLOSED.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from frames.frame import Frame, Pixels
from models.base import ModelInfo
from models.params import ParamValue
from session.errors import (
    BadMessage,
    HandshakeTimeout,
    IdleTimeout,
    InvalidParams,
    RateLimited,
    SessionTimeLimit,
    StreamError,
)
from session.jobs import Job
from session.limits import MessageRate, SessionLimits
from session.logs import SessionLog
from session.params import SessionParams
from session.protocol import (
    HOPS,
    Closing,
    ErrorCode,
    ErrorMessage,
    FrameMessage,
    Hop,
    ParamsMessage,
    Ready,
)
from session.similarity import SimilarityFilter
from session.slots import LatestSlot

logger = logging.getLogger("session.session")

Message = dict[str, object]


class SessionState(enum.Enum):
    CONNECTING = "connecting"
    WARMING = "warming"
    STREAMING = "streaming"
    DRAINING = "draining"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Output:
    """A finished job waiting in the output slot: the model's `pixels`, or the
    `error` it raised. Errors share the slot so that a client that stops reading
    cannot make them pile up either."""

    frame: Frame
    params: dict[str, ParamValue]
    pixels: Pixels | None = None
    error: str | None = None
    code: str = ErrorCode.MODEL_ERROR
    """The wire code of `error` (model_error, out_of_memory, model_restarted, model_unavailable)."""


@dataclass(slots=True)
class SessionStats:
    frames_received: int = 0
    bad_frames: int = 0
    failed_frames: int = 0
    """Frames whose model error was sent."""
    frames_sent: int = 0
    refused_messages: int = 0
    """Control messages over the rate limit, answered with `rate_limited` and not applied."""
    dropped_on_close: int = 0
    skipped_by_transport: int = 0
    """Frames a newer one replaced before they were decoded (see `skip_frames`)."""
    skipped_similar: int = 0
    """Frames the similarity filter kept out of the model (session/similarity.py)."""


class Session:
    """After `pin`, call `model_ready` once the worker's model is warm; then
    after every event call `next_job` (hand it to the worker) and send what
    `next_output` yields. `close` when the transport ends; the worker slot is
    free once `state` is CLOSED. The transport also closes it, with `closing`,
    once `expiry` names a limit it passed (check again at `next_deadline`)."""

    def __init__(
        self,
        session_id: str,
        model: ModelInfo,
        limits: SessionLimits = SessionLimits(),  # noqa: B008 (frozen: safely shared)
        started_at: float = 0.0,
        *,
        text_input: bool = False,
        buffered_frames: int = 1,
    ) -> None:
        """`text_input`: the client makes images from params alone (type-to-image), so
        each params change, and `ready`, asks the model for one; a model whose
        `info.text_to_image` is False cannot take such a session. `buffered_frames`:
        how many frames may wait for the model (fal's `max_buffering`); the newest win."""
        assert not text_input or model.text_to_image, f"{model.id} needs frames"
        self.id = session_id
        self.model = model
        self.params = SessionParams(model.params, model.constraints)
        self.limits = limits
        self.stats = SessionStats()
        self.started_at = started_at
        self._active_at = started_at
        self._message_rate = MessageRate(limits.max_messages_per_s, started_at)
        self._state = SessionState.CONNECTING
        self._inbox: LatestSlot[Frame] = LatestSlot(buffered_frames)
        self._outbox: LatestSlot[Output] = LatestSlot()
        self._in_flight: Job | None = None
        self._sending: Output | None = None
        self._decoding = 0
        """Frames numbered but not yet offered or rejected: in the decode hop."""
        self._similar = SimilarityFilter()
        self._text_only = text_input
        """Type-to-image: the client said it sends text (params), and no frame came yet."""
        self._input_open = True
        self._input_expected_at: float | None = None
        """When the client could first send (`expect_input`); None: not yet."""
        self._first_input_came = False
        self._placement = ("", "")
        self.reference: Pixels | None = None
        """The reference image every output is conditioned on (`set_reference`)."""
        self.log = SessionLog(logger, session_id)

    # State

    @property
    def state(self) -> SessionState:
        return self._state

    @state.setter
    def state(self, state: SessionState) -> None:
        self.log.info("%s -> %s", self._state.value, state.value)
        self._state = state

    @property
    def dropped_frames(self) -> int:
        """Frames that were received and decoded but will never be sent."""
        return (
            self._inbox.replaced
            + self._outbox.replaced
            + self.stats.dropped_on_close
            + self.stats.skipped_by_transport
            + self.stats.skipped_similar
        )

    @property
    def accepts_frames(self) -> bool:
        return self._input_open and self._state in (SessionState.WARMING, SessionState.STREAMING)

    @property
    def is_settled(self) -> bool:
        """Nothing in the model, no output waiting and none being sent."""
        return self._in_flight is None and not self._outbox and self._sending is None

    # Events from the transport

    def pin(self, worker: str = "", device: str = "") -> None:
        """Admitted and pinned to `worker` (on `device`), whose model may still be warming."""
        assert self._state is SessionState.CONNECTING, self._state
        self._placement = (worker, device)
        self.log.info("pinned to %s on %s", worker or "a worker", device or "its device")
        self.state = SessionState.WARMING

    def model_ready(self, now: float = 0.0) -> Message:
        """The worker's model is warm: start streaming. Returns the `ready` message.
        A type-to-image session asks for its first image, from its params so far."""
        assert self._state is SessionState.WARMING, self._state
        self.state = SessionState.STREAMING
        if self._text_only and self._inbox.peek() is None:
            self._request_image(now)
        return Ready(
            self.id,
            self.model.id,
            self.model.width,
            self.model.height,
            self.params.snapshot(),
            self.model.random_weights,
            *self._placement,
        ).to_wire()

    def expect_input(self, now: float) -> None:
        """The client can send from `now` on: it has `ready` and its transport is
        connected. Its first frame (its first params, for type-to-image) must come
        within `limits.handshake_timeout_s` (see `expiry`)."""
        if self._input_expected_at is None:
            self._input_expected_at = now

    def number_frame(self, now: float) -> int:
        """A binary message arrived: give it the next frame number (1, 2, 3, ...)."""
        self._active_at = now
        self._first_input_came = True
        self._text_only = False
        self.stats.frames_received += 1
        self._decoding += 1
        return self.stats.frames_received

    def skip_frames(self, count: int, now: float) -> None:
        """`count` frames arrived but a newer one overtook them before decoding (the
        WebSocket keeps only the newest undecoded image, WebRTC drains aiortc's receive
        queue to the newest frame): number and drop them."""
        self._active_at = now
        self._first_input_came = True
        self._text_only = False
        self.stats.frames_received += count
        self.stats.skipped_by_transport += count

    def reject_frame(self, index: int, reason: str) -> Message:
        """Frame `index` could not be decoded. Returns the error message to send."""
        if self._decoded():
            self.stats.bad_frames += 1
        return ErrorMessage(ErrorCode.BAD_FRAME, reason, source_frame=index).to_wire()

    def refuse_frame(self, error: StreamError, now: float) -> Message:
        """A frame that came in a request the session refused (a fal request carries its
        params with its image): it counts as received and bad. Returns the error."""
        self._active_at = now
        self.stats.frames_received += 1
        self.stats.bad_frames += 1
        index = self.stats.frames_received
        return ErrorMessage(error.code, error.message, error.field, index).to_wire()

    def offer_frame(self, frame: Frame) -> None:
        """A decoded frame: it replaces the waiting one, which counts as dropped."""
        if self._decoded():
            self._queue_frame(frame)

    def _decoded(self) -> bool:
        """A numbered frame's decoding ended; False when `close` already counted it."""
        if not self._decoding:
            return False
        self._decoding -= 1
        return True

    def _queue_frame(self, frame: Frame) -> None:
        if self.accepts_frames:
            self._inbox.put(frame)
        else:
            self.stats.dropped_on_close += 1

    def receive_text(self, data: str | bytes, now: float) -> Message:
        """A control message (a JSON object with a `type`). Returns the reply to send."""
        if not self._message_rate.allow(now):
            self.stats.refused_messages += 1
            rate = self.limits.max_messages_per_s
            return RateLimited(
                f"more than {rate:g} control messages per second: this one was not applied"
            ).to_message()
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            return BadMessage(f"not valid JSON: {error}").to_message()
        if not isinstance(message, dict):
            return BadMessage("a message must be a JSON object with a 'type'").to_message()
        kind = message.pop("type", None)
        try:
            if kind == "params":
                self.update_params(message, now)
                return ParamsMessage(self.params.snapshot()).to_wire()
            raise BadMessage(f"unknown message type {kind!r}; expected 'params'", field="type")
        except StreamError as error:
            return error.to_message()

    def update_params(self, changes: Mapping[str, object], now: float) -> None:
        """Apply params (from a `params` message, or a WebRTC offer), or raise
        InvalidParams and change nothing. For type-to-image they are the client's input."""
        before = self.params.snapshot()
        self.params.update(changes)
        self._active_at = now
        if self._text_only:
            self._first_input_came = True
            if self.params.values != before:
                self._request_image(now)

    def set_reference(self, pixels: Pixels | None, now: float) -> None:
        """Condition the next outputs on `pixels` (decoded at the model's size), or on
        none; InvalidParams, naming `reference`, when the model takes no reference. The
        next job takes it: the frame in the model still has the one before."""
        if pixels is not None:
            self.check_takes_reference()
        self._active_at = now
        self.reference = pixels
        self.log.info("reference %s", "cleared" if pixels is None else "set")

    def check_takes_reference(self) -> None:
        """InvalidParams, naming `reference`, unless the model takes a reference image."""
        if not self.model.takes_reference:
            raise InvalidParams(
                f"model {self.model.id!r} takes no reference image (it has no IP-Adapter);"
                " serve one with --ip-adapter, or the tiny-avatar model",
                field="reference",
            )

    def request_image(self, now: float, tag: object = None) -> None:
        """A request for one image from the params alone, whether or not they changed
        (fal's text-to-image apps ask once per image they want)."""
        self._active_at = now
        self._first_input_came = True
        self._request_image(now, tag)

    def _request_image(self, now: float, tag: object = None) -> None:
        """Type-to-image: ask for an image from the params alone. It is numbered and
        queued like a frame, so the newest params win and a replaced request counts
        as dropped; a frame, once one comes, replaces it too."""
        self.stats.frames_received += 1
        frame = Frame(None, self.stats.frames_received, now, {Hop.DECODE: 0.0}, tag)
        self._queue_frame(frame)

    def stop_input(self, cause: StreamError) -> Message:
        """The session is ending (shutdown, a limit): take no more frames, but finish
        the one in the model (wait for `is_settled`). The frame waiting for the model
        is dropped. Returns the `closing` message to send."""
        self._input_open = False
        self.stats.dropped_on_close += self._inbox.clear()
        self.log.info("closing (%s): %s", cause.code, cause.message)
        return Closing(cause.code, cause.message).to_wire()

    # Limits

    def expiry(self, now: float) -> StreamError | None:
        """The limit this session has passed at `now`, if any: it should then be closed."""
        duration = self.limits.max_duration_s
        if duration is not None and now - self.started_at >= duration:
            return SessionTimeLimit(f"sessions on this server last at most {duration:g} s")
        handshake = self._handshake_deadline()
        if handshake is not None and now >= handshake:
            first = "params" if self._text_only else "frame"
            return HandshakeTimeout(
                f"no first {first} in {self.limits.handshake_timeout_s:g} s after ready"
            )
        idle = self.limits.idle_timeout_s
        if idle is not None and now - self._active_at >= idle:
            return IdleTimeout(f"no frame and no params for {idle:g} s")
        return None

    def next_deadline(self) -> float | None:
        """When `expiry` may next name a limit (a monotonic time), or None: never."""
        deadlines = []
        if self.limits.max_duration_s is not None:
            deadlines.append(self.started_at + self.limits.max_duration_s)
        if self.limits.idle_timeout_s is not None:
            deadlines.append(self._active_at + self.limits.idle_timeout_s)
        if (handshake := self._handshake_deadline()) is not None:
            deadlines.append(handshake)
        return min(deadlines, default=None)

    def _handshake_deadline(self) -> float | None:
        timeout = self.limits.handshake_timeout_s
        if timeout is None or self._first_input_came or self._input_expected_at is None:
            return None
        return self._input_expected_at + timeout

    def close(self) -> None:
        """The transport ended. A frame still in the model keeps the slot until it returns."""
        if self._state in (SessionState.DRAINING, SessionState.CLOSED):
            return
        # A frame still being decoded (its transport's task is cancelled with it) and a
        # taken output whose sending never finished never reach the client.
        self.stats.dropped_on_close += (
            self._decoding
            + self._inbox.clear()
            + self._outbox.clear()
            + (self._sending is not None)
        )
        self._decoding = 0
        self._sending = None
        self.state = SessionState.DRAINING if self._in_flight else SessionState.CLOSED

    # The data path

    def next_job(self) -> Job | None:
        """The newest frame for the model, unless one of ours is already in it."""
        if self._state is not SessionState.STREAMING or self._in_flight is not None:
            return None
        frame = self._inbox.take()
        if frame is None:
            return None
        params = self.params.snapshot()
        threshold = float(params["similarity_filter"])
        if frame.pixels is not None and self._similar.skips(frame.pixels, params, threshold):
            self.stats.skipped_similar += 1
            return None
        self._in_flight = Job(self.id, frame, params, self.reference)
        return self._in_flight

    def finish_job(self, pixels: Pixels, started_at: float, model_ms: float) -> None:
        """The model made `pixels` from the job in flight (started at monotonic `started_at`)."""
        job = self._end_job()
        frame = job.frame
        decoding_ms = frame.timings_ms.get(Hop.DECODE, 0.0) + frame.timings_ms.get(Hop.CONTROL, 0.0)
        decoded_at = frame.received_at + decoding_ms / 1000
        frame.timings_ms[Hop.QUEUE] = max(0.0, (started_at - decoded_at) * 1000)
        frame.timings_ms[Hop.MODEL] = model_ms
        self._deliver(Output(frame, job.params, pixels=pixels))

    def fail_job(self, reason: str, code: str = ErrorCode.MODEL_ERROR) -> None:
        """The model raised on the job in flight (or the worker could not run it, as
        `code` says); the client is told through the output slot."""
        job = self._end_job()
        self._deliver(Output(job.frame, job.params, error=reason, code=code))

    def next_output(self) -> Output | None:
        """Take the newest output to send; call `output_sent` once it is sent."""
        assert self._sending is None, "the previous output is still being sent"
        self._sending = self._outbox.take()
        return self._sending

    def output_sent(self, output: Output) -> None:
        """The transport sent `output`: it counts as sent (or, for an error, failed)."""
        if output is not self._sending:
            return  # closed meanwhile: already counted as dropped
        self._sending = None
        if output.error is not None:
            self.stats.failed_frames += 1
        else:
            self.stats.frames_sent += 1

    def output_message(self, output: Output, encode_ms: float = 0.0) -> Message:
        """The message for a taken output: a model error, or the `frame` metadata
        that goes just before the encoded image."""
        if output.error is not None:
            return ErrorMessage(
                output.code, output.error, source_frame=output.frame.index
            ).to_wire()
        timings = output.frame.timings_ms
        timings[Hop.ENCODE] = encode_ms
        return FrameMessage(
            output.frame.index,
            {hop: round(timings.get(hop, 0.0), 3) for hop in HOPS},
            self.dropped_frames,
            self.stats.skipped_similar,
        ).to_wire()

    def _deliver(self, output: Output) -> None:
        if self._state is SessionState.DRAINING:
            self.stats.dropped_on_close += 1
            self.state = SessionState.CLOSED
        else:
            self._outbox.put(output)

    def _end_job(self) -> Job:
        job = self._in_flight
        assert job is not None, "no job in flight"
        self._in_flight = None
        return job
