"""What a session hands its worker (`Job`) and what comes back (`JobResult`).

A job that the model could not make an image of comes back with an `error` and
its wire `code`; the session sends it on as a per-frame error and goes on:

- `model_error`: the model raised on the batch the frame was in.
- `out_of_memory`: the model ran out of (GPU) memory, even for the frame alone.
- `model_restarted`: the model kept failing and was reloaded; the frame was in the
  worker meanwhile (session/restarts.py says when).
- `model_unavailable`: the model could not be reloaded; the worker answers each
  frame at once until it can.
"""

from __future__ import annotations

from dataclasses import dataclass

from frames.frame import Frame, Pixels
from models.params import ParamValue
from session.protocol import ErrorCode


@dataclass(frozen=True, slots=True)
class Job:
    """One frame handed to the model, with the params it must be made with."""

    session_id: str
    frame: Frame
    params: dict[str, ParamValue]
    reference: Pixels | None = None
    """The session's reference image (avatar mode), the same object while it stays."""


@dataclass(frozen=True, slots=True)
class JobResult:
    """What became of a job: `pixels`, or the `error` the model raised and its `code`.

    `started_at` is when the model call began (a monotonic time), `model_ms` how
    long it took; a job answered without running it has a `model_ms` of 0."""

    job: Job
    pixels: Pixels | None
    error: str | None
    started_at: float
    model_ms: float
    code: str = ErrorCode.MODEL_ERROR
    """The error's wire code: model_error, out_of_memory, model_restarted or model_unavailable."""
