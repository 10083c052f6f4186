"""ModelWorker: one thread that loads, warms and runs one model on one device.

Sessions pinned to a worker hand it at most one job each (Session.next_job
guarantees it), so its pending jobs are bounded by its sessions. Each loop
takes every pending job, up to `max_batch`, and runs them as one model call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from frames.frame import Pixels
from models.base import Model, ModelEntry, ModelInput
from session.session import Job

logger = logging.getLogger("session.worker")


@dataclass(frozen=True, slots=True)
class JobResult:
    """What became of a job: `pixels`, or the `error` the model raised."""

    job: Job
    pixels: Pixels | None
    error: str | None
    started_at: float
    model_ms: float


JobCallback = Callable[[JobResult], None]
"""Called on the worker's thread: hand the result over to the session's own thread."""


class ModelWorker:
    """Call `start`, wait for `wait_loaded`, then `submit` jobs; `stop` at the end."""

    def __init__(self, entry: ModelEntry, device: str, *, name: str, max_batch: int = 8) -> None:
        self.entry = entry
        self.device = device
        self.name = name
        self.max_batch = max_batch
        self.load_error: BaseException | None = None
        self.busy_seconds = 0.0
        """Time spent in model calls; written by the worker thread, read by metrics."""
        self.batches = 0
        self._warm = False
        self._load_ended = threading.Event()
        """Set once loading succeeded, failed, or was abandoned by `stop`."""
        self._wakeup = threading.Condition()
        self._pending: dict[str, tuple[Job, JobCallback]] = {}
        self._session_states: dict[str, dict[str, Any]] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    @property
    def model_id(self) -> str:
        return self.entry.info.id

    def start(self) -> None:
        self._thread.start()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until the model is warm, failed to load, or the worker stopped;
        True when it is warm."""
        self._load_ended.wait(timeout)
        return self._warm

    @property
    def is_loaded(self) -> bool:
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
        """Finish the batch in progress, then end the thread."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        self._load_ended.set()  # nobody waits for a load that may never end
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _main(self) -> None:
        model = self._load()
        if model is None:
            return
        while True:
            with self._wakeup:
                while not self._pending and not self._stopping:
                    self._wakeup.wait()
                if self._stopping:
                    return
                batch = [self._pending.pop(key) for key in list(self._pending)[: self.max_batch]]
                states = [self._session_states.setdefault(job.session_id, {}) for job, _ in batch]
            self._run(model, batch, states)

    def _load(self) -> Model | None:
        started = time.perf_counter()
        logger.info("%s: loading model %r on %s", self.name, self.model_id, self.device)
        try:
            model = self.entry.load(self.device)
            loaded = time.perf_counter()
            logger.info("%s: loaded in %.1f s, warming up", self.name, loaded - started)
            model.warmup()
            logger.info("%s: warm in %.1f s", self.name, time.perf_counter() - loaded)
            self._warm = True
            return model
        except Exception as error:
            self.load_error = error
            logger.error("%s: could not load model %r: %s", self.name, self.model_id, error)
            return None
        finally:
            self._load_ended.set()

    def _run(
        self, model: Model, batch: list[tuple[Job, JobCallback]], states: list[dict[str, Any]]
    ) -> None:
        inputs = [
            ModelInput(job.frame.pixels, job.params, state)
            for (job, _), state in zip(batch, states, strict=True)
        ]
        started = time.perf_counter()
        try:
            outputs: list[Pixels | None] = list(model.run(inputs))
            error = None
        except Exception as exc:
            logger.exception(
                "%s: model %r failed on a batch of %d", self.name, self.model_id, len(batch)
            )
            outputs, error = [None] * len(batch), f"{type(exc).__name__}: {exc}"
        model_ms = (time.perf_counter() - started) * 1000
        self.busy_seconds += model_ms / 1000
        self.batches += 1
        for (job, on_done), pixels in zip(batch, outputs, strict=True):
            on_done(JobResult(job, pixels, error, started, model_ms))
