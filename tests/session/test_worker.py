"""ModelWorker with real models on its own thread."""

import queue
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from frames.frame import Frame, Pixels
from models.base import ModelEntry, ModelInfo, ModelInput
from models.effects import INVERT, load_invert
from session.session import Job
from session.worker import JobResult, ModelWorker

FAILING = ModelInfo("fails-on-odd", "raises on frames whose first pixel is odd", "effect", 4, 4)


class FailsOnOdd:
    info = FAILING

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def warmup(self) -> None:
        pass

    def run(self, batch: Sequence[ModelInput]) -> list[Pixels]:
        self.batch_sizes.append(len(batch))
        if any(item.pixels[0, 0, 0] % 2 for item in batch):
            raise ValueError("odd frame")
        for item in batch:
            item.state["frames"] = item.state.get("frames", 0) + 1
        return [item.pixels + 1 for item in batch]


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
