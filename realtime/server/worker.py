"""ModelWorker: one thread that loads, warms and runs one model on one device.

The thread, its Condition and the model calls live here, on the I/O side; the
decisions are the sans-I/O policies of the session core, which the thread drives
with the time: what to batch and how long to wait for it
(session/batching.py's `BatchGathering`), when to restart the model and how long
to back off between reloads (session/restarts.py's `RestartPolicy`).

Sessions pinned to a worker hand it at most one job each (Session.next_job
guarantees it), so its pending jobs are bounded by its sessions. Each loop
takes every pending job, up to `max_batch`, and runs them as one model call
(waiting a tenth of its last call at most for the rest of its sessions).

When the model raises, each frame of that call fails with an error `code`
its session sends on (none of them ends a session; session/jobs.py):

- `model_error`: the frames of that batch fail; the worker goes on.
- `out_of_memory`: the model ran out of (GPU) memory. `models.memory.recover`
  frees what it can (the worker itself never imports torch), and the frames of
  the batch are tried once more one by one: a frame alone needs the least
  memory, and a session whose frame fits is not failed by another's that does
  not. Running out of memory says nothing about the model's health, so it does
  not count toward a restart.
- `model_restarted`: the model failed `restart_after` batches in a row, so the
  instance is taken to be broken (a corrupted CUDA context, weights turned to
  NaN, a leak): the worker drops it and loads and warms a fresh one on its own
  thread. The frames of the last failed batch, and every frame that waited
  through the reload (seconds old by then; its session has a newer one
  waiting), fail with this code, so every session with a frame in the worker
  learns of the restart; the frames after them run on the fresh model. A
  session with no frame in the worker is not told: it lost nothing but its
  per-session model state, a cache that its params rebuild.
- `model_unavailable`: the reload failed. The worker keeps its sessions and
  retries with exponential backoff (`reload_backoff_s`, doubling up to
  `max_reload_backoff_s`) rather than giving up: the cause may pass (memory
  freed by another process, a file restored), and the server stays up for its
  other models. Meanwhile each frame fails at once with this code rather than
  wait an unknown time in the worker.

Why sessions are told through their frames' results, not by a callback to
every pinned session: an error that is a frame's result travels the data path
as it is, under its rules (one job per session in the worker, errors sharing
the output slot, every frame counted), and the transports need nothing new.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from frames.device_codec import Codec, CpuCodec, codec_for
from frames.frame import Pixels
from models.base import Model, ModelEntry, ModelInput
from models.memory import free_memory, is_out_of_memory, recover
from session.batching import BatchGathering
from session.jobs import Job, JobResult
from session.protocol import ErrorCode
from session.restarts import RestartPolicy, failure_code

logger = logging.getLogger("realtime.server.worker")

_LOADING = threading.Lock()
"""One model loads at a time: the libraries' lazy imports (transformers') are not
thread-safe, and models loading side by side only compete for the same disk."""

JobCallback = Callable[[JobResult], None]
"""Called on the worker's thread: hand the result over to the session's own thread."""

_Pending = tuple[Job, JobCallback]
_Taken = tuple[Job, JobCallback, dict[str, Any]]
"""A job taken for the model, with its callback and its session's model state."""

_Done = tuple[JobCallback, JobResult]


@dataclass(frozen=True, slots=True)
class _Call:
    """One call of the model: its outputs, or the error it raised."""

    outputs: list[Pixels | None]
    error: str | None
    code: str
    recovered: bool
    started_at: float
    model_ms: float


class ModelWorker:
    """Call `start`, wait for `wait_loaded`, then `submit` jobs; `stop` at the end."""

    def __init__(
        self,
        entry: ModelEntry,
        device: str,
        *,
        name: str,
        max_batch: int = 8,
        restart_after: int = 5,
        reload_backoff_s: float = 1.0,
        max_reload_backoff_s: float = 60.0,
    ) -> None:
        self.entry = entry
        self.device = device
        self.name = name
        self.gathering = BatchGathering(max_batch)
        """What each model call takes, and when; touched by the worker thread only."""
        self.restart_policy = RestartPolicy(restart_after, reload_backoff_s, max_reload_backoff_s)
        """Batches failing in a row (out-of-memory aside) after which the model is reloaded,
        and the backoff between reloads; touched by the worker thread only."""
        self.load_error: BaseException | None = None
        self.codec: Codec = CpuCodec()
        """How the sessions pinned here decode their images and encode their outputs:
        nvjpeg on a CUDA model's GPU where it can (frames/device_codec.py), chosen when
        the model has loaded; then the model hands back its outputs on the device."""
        self.busy_seconds = 0.0
        """Time spent in model calls; written by the worker thread, read by metrics."""
        self.batches = 0
        self._warm = False
        self._load_ended = threading.Event()
        """Set once loading succeeded, failed, or was abandoned by `stop`."""
        self._wakeup = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        self._session_states: dict[str, dict[str, Any]] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    @property
    def model_id(self) -> str:
        return self.entry.info.id

    @property
    def restarts(self) -> int:
        """Successful reloads of the model after it kept failing."""
        return self.restart_policy.restarts

    def start(self) -> None:
        self._thread.start()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until the model is warm, failed to load, or the worker stopped;
        True when it is warm."""
        self._load_ended.wait(timeout)
        return self._warm

    @property
    def is_loaded(self) -> bool:
        """Warm and serving; False while the model is being reloaded or cannot be."""
        return self._warm

    def submit(self, job: Job, on_done: JobCallback) -> None:
        with self._wakeup:
            if job.session_id in self._pending:
                raise RuntimeError(f"session {job.session_id} already has a job pending")
            self._pending[job.session_id] = (job, on_done)
            self._wakeup.notify()

    def forget(self, session_id: str) -> None:
        """The session ended: drop the per-session state its model kept."""
        with self._wakeup:
            self._session_states.pop(session_id, None)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in progress, then end the thread. A first load (or warm-up)
        cannot be interrupted, so it is not waited for: `is_running` tells whether the
        thread is still at it (the process must then end without finalizing, see
        realtime/server/serving.py)."""
        loading = not self._load_ended.is_set()
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        self._load_ended.set()  # nobody waits for a load that may never end
        if self._thread.is_alive() and not loading:
            self._thread.join(timeout)

    @property
    def is_running(self) -> bool:
        """The thread has not ended (it may be loading, or finishing a batch past `stop`)."""
        return self._thread.is_alive()

    def _main(self) -> None:
        model = self._load()
        if model is None:
            return
        while (pending := self._take_batch()) is not None:
            batch = self._with_states(pending)
            done = self._run(model, batch)
            if not self.restart_policy.restart_due:
                _deliver(done)
                continue
            # Ours were the last references to the broken instance and the batch's state
            # (the sessions' states go in _restart): drop them before loading another
            # instance, a GPU may not hold two.
            del model, batch, pending
            restarted = self._restart(done)
            if restarted is None:
                return
            model = restarted

    def _take_batch(self) -> list[_Pending] | None:
        """Wait for the jobs of the next model call, as `gathering` decides (a job of
        each session, or as many as came within a share of the last call), and take
        them; None when the worker is stopping."""
        with self._wakeup:
            while not self._stopping:
                now = time.monotonic()
                gather = self.gathering.decide(len(self._pending), len(self._session_states), now)
                if gather.take:
                    return [self._pending.pop(key) for key in list(self._pending)[: gather.take]]
                self._wakeup.wait(None if gather.wait_until is None else gather.wait_until - now)
            return None

    def _take_all(self, timeout: float) -> list[_Pending] | None:
        """Wait up to `timeout` seconds for pending jobs and take them all; [] when the
        time is up, None when the worker is stopping."""
        deadline = time.monotonic() + timeout
        with self._wakeup:
            while not self._pending and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._wakeup.wait(left)
            if self._stopping:
                return None
            taken = list(self._pending.values())
            self._pending.clear()
            return taken

    def _with_states(self, pending: list[_Pending]) -> list[_Taken]:
        with self._wakeup:
            return [
                (job, on_done, self._session_states.setdefault(job.session_id, {}))
                for job, on_done in pending
            ]

    def _load(self) -> Model | None:
        """The first load: on failure the worker reports why and ends (the server exits)."""
        try:
            return self._load_and_warm()
        except Exception as error:
            self.load_error = error
            logger.error("%s: could not load model %r: %s", self.name, self.model_id, error)
            return None
        finally:
            self._load_ended.set()

    def _load_and_warm(self) -> Model:
        started = time.perf_counter()
        logger.info("%s: loading model %r on %s", self.name, self.model_id, self.device)
        with _LOADING:
            model = self.entry.load(self.device)
        if hasattr(model, "run_on_device"):  # a diffusion model (FewStepModel)
            self.codec = codec_for(self.device)
        loaded = time.perf_counter()
        logger.info("%s: loaded in %.1f s, warming up", self.name, loaded - started)
        model.warmup()
        logger.info("%s: warm in %.1f s", self.name, time.perf_counter() - loaded)
        self._warm = True
        return model

    def _run(self, model: Model, batch: list[_Taken]) -> list[_Done]:
        call = self._call(model, batch)
        if call.recovered and len(batch) > 1:
            return [done for taken in batch for done in self._run(model, [taken])]
        return [
            (on_done, JobResult(job, pixels, call.error, call.started_at, call.model_ms, call.code))
            for (job, on_done, _), pixels in zip(batch, call.outputs, strict=True)
        ]

    def _call(self, model: Model, batch: list[_Taken]) -> _Call:
        inputs = [
            ModelInput(job.frame.pixels, job.params, state, job.reference, job.frame.control)
            for job, _, state in batch
        ]
        started = time.perf_counter()
        failure: Exception | None = None
        try:
            outputs = self._outputs(model, inputs)
        except Exception as exc:
            logger.exception(
                "%s: model %r failed on a batch of %d", self.name, self.model_id, len(batch)
            )
            failure = exc
            _clear_tracebacks(exc)
        model_ms = (time.perf_counter() - started) * 1000
        self.gathering.call_ended(model_ms / 1000)
        self.busy_seconds += model_ms / 1000
        self.batches += 1
        if failure is None:
            self.restart_policy.call_succeeded()
            return _Call(outputs, None, ErrorCode.MODEL_ERROR, False, started, model_ms)
        error = f"{type(failure).__name__}: {failure}"
        code = failure_code(out_of_memory=is_out_of_memory(failure))
        try:
            recovered = recover(model, failure)
        except Exception:
            logger.exception("%s: recovering from %s failed", self.name, error)
            recovered = False
        del failure
        if recovered:
            logger.warning("%s: recovered from %s", self.name, error)
        self.restart_policy.call_failed(recovered=recovered)
        return _Call([None] * len(batch), error, code, recovered, started, model_ms)

    def _outputs(self, model: Model, inputs: list[ModelInput]) -> list[Pixels | None]:
        if not self.codec.on_device:
            return list(model.run(inputs))
        # Outputs stay on the GPU for the codec to encode there: tensors that the
        # session core passes on as opaque pixels.
        return cast(list[Pixels | None], model.run_on_device(inputs))  # type: ignore[attr-defined]

    def _restart(self, failed: list[_Done]) -> Model | None:
        """Drop the broken model and load a fresh one, retrying with backoff until it
        loads; `failed` (the last failed batch) is told how it went. Returns the new
        model, or None when the worker was stopped first."""
        policy = self.restart_policy
        cause = failed[0][1].error
        what = f"model {self.model_id!r} failed {policy.failed_in_a_row} batches in a row ({cause})"
        logger.error("%s: %s; reloading it", self.name, what)
        self._warm = False
        policy.restart_began()
        with self._wakeup:
            # It may hold the broken instance's tensors; it is a cache that params rebuild.
            for state in self._session_states.values():
                state.clear()
            self._session_states.clear()
        while True:
            free_memory()
            try:
                model = self._load_and_warm()
            except Exception as error:
                backoff = policy.reload_failed(time.monotonic())
                logger.error(
                    "%s: reload %d of model %r failed: %s; next try in %g s",
                    self.name,
                    policy.reload_attempts,
                    self.model_id,
                    error,
                    backoff,
                )
                if not self._down(failed, f"{what} and could not be reloaded ({error})"):
                    return None
                failed = []
                policy.reload_began()
                continue
            policy.reload_succeeded()
            logger.info(
                "%s: model %r reloaded (restart %d)", self.name, self.model_id, self.restarts
            )
            message = f"{what} and was reloaded; this frame was not made, the next one will be"
            waited = self._take_all(timeout=0) or []
            _deliver(_failed(failed, policy.held_code, message))
            _deliver(_failed(_untried(waited), policy.held_code, message))
            return model

    def _down(self, failed: list[_Done], what: str) -> bool:
        """No model until the next reload is due: fail `failed`, and each frame that
        comes meanwhile, at once. False when the worker is stopping."""
        policy = self.restart_policy
        while True:
            now = time.monotonic()
            left = policy.retry_in(now)
            message = f"{what}; trying again in {left:.1f} s"
            _deliver(_failed(failed, policy.held_code, message))
            if policy.retry_due(now):
                return True
            taken = self._take_all(timeout=left)
            if taken is None:
                return False
            failed = _untried(taken)


def _untried(pending: list[_Pending]) -> list[_Done]:
    """Results for jobs that never reached the model."""
    now = time.perf_counter()
    return [(on_done, JobResult(job, None, None, now, 0.0)) for job, on_done in pending]


def _failed(done: list[_Done], code: str, message: str) -> list[_Done]:
    return [
        (on_done, JobResult(r.job, None, message, r.started_at, r.model_ms, code))
        for on_done, r in done
    ]


def _clear_tracebacks(error: BaseException) -> None:
    """The frames of a failed model call hold the batch's tensors until the error
    is gone: clear their locals, so that recovering can free that memory."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


def _deliver(done: list[_Done]) -> None:
    for on_done, result in done:
        on_done(result)
