"""ModelWorker with real models on its own thread."""

import queue
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from faulty_models import BROKEN, FAULTY, Faulty, Loader
from support import input_pixels

from frames.frame import Frame, Pixels
from models.base import ModelEntry, ModelInfo, ModelInput
from models.effects import INVERT, load_invert
from models.memory import recover_from_oom
from realtime.server.worker import ModelWorker
from session.jobs import Job, JobResult

FAILING = ModelInfo("fails-on-odd", "raises on frames whose first pixel is odd", "effect", 4, 4)


class FailsOnOdd:
    info = FAILING

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def warmup(self) -> None:
        pass

    def run(self, batch: Sequence[ModelInput]) -> list[Pixels]:
        self.batch_sizes.append(len(batch))
        if any(input_pixels(item)[0, 0, 0] % 2 for item in batch):
            raise ValueError("odd frame")
        for item in batch:
            item.state["frames"] = item.state.get("frames", 0) + 1
        return [input_pixels(item) + 1 for item in batch]


def job(session_id: str, value: int) -> Job:
    return Job(session_id, Frame(np.full((4, 4, 3), value, np.uint8), 1, 0.0), {"delay_ms": 0})


@pytest.fixture
def results() -> "queue.Queue[JobResult]":
    return queue.Queue()


@pytest.fixture
def invert_worker() -> Iterator[ModelWorker]:
    worker = ModelWorker(ModelEntry(INVERT, load_invert), "cpu", name="invert-0")
    worker.start()
    assert worker.wait_loaded(10)
    yield worker
    worker.stop()


def test_runs_a_job_and_reports_timings(
    invert_worker: ModelWorker, results: "queue.Queue[JobResult]"
) -> None:
    invert_worker.submit(job("a", 10), results.put)
    result = results.get(timeout=10)
    assert result.error is None
    assert result.pixels is not None and (result.pixels == 245).all()
    assert result.model_ms >= 0


def test_one_pending_job_per_session(invert_worker: ModelWorker) -> None:
    blocked = ModelWorker(ModelEntry(INVERT, load_invert), "cpu", name="not-started")
    blocked.submit(job("a", 1), lambda result: None)
    with pytest.raises(RuntimeError, match="already has a job pending"):
        blocked.submit(job("a", 2), lambda result: None)


def test_a_failing_batch_reports_the_error_and_the_worker_goes_on(
    results: "queue.Queue[JobResult]",
) -> None:
    model = FailsOnOdd()
    worker = ModelWorker(ModelEntry(FAILING, lambda device: model), "cpu", name="fails-0")
    worker.start()
    try:
        assert worker.wait_loaded(10)
        worker.submit(job("a", 1), results.put)
        failed = results.get(timeout=10)
        assert failed.pixels is None
        assert failed.error == "ValueError: odd frame"
        worker.submit(job("a", 2), results.put)
        assert results.get(timeout=10).pixels is not None
    finally:
        worker.stop()


def test_pending_jobs_of_several_sessions_run_as_one_batch_with_their_own_state(
    results: "queue.Queue[JobResult]",
) -> None:
    model = FailsOnOdd()
    worker = ModelWorker(ModelEntry(FAILING, lambda device: model), "cpu", name="fails-0")
    for session_id in "abc":  # submitted before the thread starts: all pending at once
        worker.submit(job(session_id, 2), results.put)
    worker.start()
    try:
        assert {results.get(timeout=10).job.session_id for _ in range(3)} == {"a", "b", "c"}
        assert model.batch_sizes == [3]
        worker.submit(job("a", 2), results.put)
        results.get(timeout=10)
        worker.forget("b")
    finally:
        worker.stop()
    assert worker._session_states == {"a": {"frames": 2}, "c": {"frames": 1}}


def test_a_model_that_cannot_load_reports_why() -> None:
    def cannot_load(device: str) -> FailsOnOdd:
        raise OSError("weights for 'fails-on-odd' are not in the cache")

    worker = ModelWorker(ModelEntry(FAILING, cannot_load), "cpu", name="fails-0")
    worker.start()
    assert not worker.wait_loaded(10)
    assert "not in the cache" in str(worker.load_error)


# A model that keeps failing is reloaded; one that runs out of memory is not.


def faulty_job(session_id: str, value: int = 10, **params: int) -> Job:
    pixels = np.full((64, 64, 3), value, np.uint8)
    return Job(session_id, Frame(pixels, 1, 0.0), {"fail": 0, "oom": 0, **params})


@contextmanager
def running(worker: ModelWorker) -> Iterator[ModelWorker]:
    worker.start()
    try:
        assert worker.wait_loaded(10)
        yield worker
    finally:
        worker.stop()


def run_one(worker: ModelWorker, results: "queue.Queue[JobResult]", job: Job) -> JobResult:
    worker.submit(job, results.put)
    return results.get(timeout=10)


def test_failures_short_of_the_limit_do_not_restart_the_model(
    results: "queue.Queue[JobResult]",
) -> None:
    loader = Loader(["--"])  # fails its first two batches, then recovers by itself
    with running(ModelWorker(loader.entry(), "cpu", name="faulty-0", restart_after=3)) as worker:
        codes = [run_one(worker, results, faulty_job("a")).code for _ in range(2)]
        assert codes == ["model_error", "model_error"]
        assert run_one(worker, results, faulty_job("a")).pixels is not None
        # The count is of failures in a row: two more, after a success, are not three.
        for _ in range(2):
            assert run_one(worker, results, faulty_job("a", fail=1)).code == "model_error"
        assert run_one(worker, results, faulty_job("a")).pixels is not None
    assert (loader.loads, worker.restarts) == (1, 0)


def test_a_model_that_keeps_failing_is_reloaded_and_its_sessions_are_told(
    results: "queue.Queue[JobResult]",
) -> None:
    gate = threading.Event()
    loader = Loader(["++" + BROKEN], gate)  # works, then breaks until it is reloaded
    worker = ModelWorker(loader.entry(), "cpu", name="faulty-0", restart_after=3)
    with running(worker):
        for session_id in "ab":  # both have per-session state in the first instance
            assert run_one(worker, results, faulty_job(session_id)).pixels is not None
        failed = [run_one(worker, results, faulty_job("a")) for _ in range(2)]
        assert [result.code for result in failed] == ["model_error", "model_error"]
        assert failed[0].error == "RuntimeError: simulated model failure"

        worker.submit(faulty_job("a"), results.put)  # the third failure in a row
        assert loader.reloading.wait(10)
        assert not worker.is_loaded
        worker.submit(faulty_job("b"), results.put)  # waits through the reload
        gate.set()
        told = {(result := results.get(timeout=10)).job.session_id: result for _ in range(2)}
        assert set(told) == {"a", "b"}
        for result in told.values():
            assert result.code == "model_restarted" and result.pixels is None
            assert result.error is not None
            assert "failed 3 batches in a row (RuntimeError: simulated model failure)" in (
                result.error
            )
            assert "reloaded" in result.error

        assert worker.is_loaded
        output = run_one(worker, results, faulty_job("a", value=10))
        assert output.pixels is not None and (output.pixels == 245).all()
    assert (loader.loads, worker.restarts) == (2, 1)
    assert loader.instances[1].calls == 1  # the fresh instance ran a's frame, b's was told
    # The broken instance's per-session state went with it: a starts again, b has none.
    assert worker._session_states == {"a": {"frames": 1}}


def test_a_failed_reload_is_reported_and_retried_with_backoff(
    results: "queue.Queue[JobResult]",
) -> None:
    loader = Loader([BROKEN, OSError("weights not in the cache")])  # the third load works
    worker = ModelWorker(
        loader.entry(), "cpu", name="faulty-0", restart_after=2, reload_backoff_s=0.01
    )
    with running(worker):
        assert run_one(worker, results, faulty_job("a")).code == "model_error"
        unavailable = run_one(worker, results, faulty_job("a"))
        assert unavailable.code == "model_unavailable"
        assert unavailable.error is not None
        assert "could not be reloaded (weights not in the cache)" in unavailable.error
        codes = []
        while (result := run_one(worker, results, faulty_job("a"))).pixels is None:
            codes.append(result.code)
            assert len(codes) < 1000
        assert set(codes) <= {"model_unavailable", "model_restarted"}
    assert (loader.loads, worker.restarts) == (3, 1)


def test_while_the_model_cannot_be_reloaded_frames_fail_at_once_and_stop_still_stops(
    results: "queue.Queue[JobResult]",
) -> None:
    loader = Loader([BROKEN, OSError("gone"), OSError("still gone")])
    worker = ModelWorker(
        loader.entry(), "cpu", name="faulty-0", restart_after=1, reload_backoff_s=600
    )
    with running(worker):
        assert run_one(worker, results, faulty_job("a")).code == "model_unavailable"
        assert not worker.is_loaded
        # Submitted during a backoff of 10 minutes: told now, not after the next reload.
        for session_id in "ab":
            result = run_one(worker, results, faulty_job(session_id))
            assert result.code == "model_unavailable"
    assert not worker._thread.is_alive()
    assert loader.loads == 2


class RecordsRecovery(Faulty):
    """Runs out of memory while a large buffer is alive in `run`; `recover` notes
    whether the buffer could be freed by then, and frees the cache."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer_freed: list[bool] = []

    def run(self, batch: Sequence[ModelInput]) -> list[Pixels]:
        buffer = torch.empty(1024, 1024)
        self.buffer = weakref.ref(buffer)
        return super().run(batch)

    def recover(self, error: BaseException) -> bool:
        self.buffer_freed.append(self.buffer() is None)
        return recover_from_oom(error)


def test_out_of_memory_frees_memory_and_retries_the_batch_one_by_one(
    results: "queue.Queue[JobResult]", monkeypatch: pytest.MonkeyPatch
) -> None:
    emptied: list[bool] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    model = RecordsRecovery()
    worker = ModelWorker(
        ModelEntry(FAULTY, lambda device: model), "cpu", name="faulty-0", restart_after=1
    )
    worker.submit(faulty_job("a", oom=1), results.put)
    for session_id in "bc":  # all pending at once: one batch
        worker.submit(faulty_job(session_id), results.put)
    with running(worker):
        done = {(result := results.get(timeout=10)).job.session_id: result for _ in range(3)}
        assert done["a"].code == "out_of_memory" and done["a"].pixels is None
        assert (
            done["a"].error == "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"
        )
        assert done["b"].pixels is not None and done["c"].pixels is not None
        # Running out of memory is no sign of a broken model: no restart, even at 1.
        for _ in range(3):
            assert run_one(worker, results, faulty_job("a", oom=1)).code == "out_of_memory"
        assert run_one(worker, results, faulty_job("a")).pixels is not None
    assert model.batch_sizes == [3, 1, 1, 1, 1, 1, 1, 1]
    assert worker.restarts == 0
    assert len(emptied) == 5  # the batch of 3, a alone in its retry, 3 more
    assert all(model.buffer_freed)  # the failure's traceback no longer held it
