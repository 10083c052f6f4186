from dataclasses import dataclass

import pytest

from session.errors import ServerFull, UnknownModel
from session.pool import WorkerPool


@dataclass(frozen=True)
class Worker:
    """All admission sees of a worker."""

    name: str
    model_id: str = "invert"


def make_pool(workers: int, max_sessions: int) -> WorkerPool[Worker]:
    return WorkerPool([Worker(f"invert-{n}") for n in range(workers)], max_sessions)


def test_sessions_spread_over_workers_of_their_model() -> None:
    pool = make_pool(workers=2, max_sessions=4)
    first, second, third = (pool.admit("invert") for _ in range(3))
    assert first is not second
    assert third in (first, second)
    assert pool.session_count == 3
    pool.release(first)
    assert pool.session_count == 2
    assert pool.admit("invert") is first


def test_admission_stops_at_max_sessions_and_resumes_after_release() -> None:
    pool = make_pool(workers=1, max_sessions=2)
    worker = pool.admit("invert")
    pool.admit("invert")
    with pytest.raises(ServerFull, match="all 2 session slots are taken"):
        pool.admit("invert")
    pool.release(worker)
    assert pool.admit("invert") is worker


def test_unknown_model_names_what_is_served() -> None:
    pool = make_pool(workers=1, max_sessions=2)
    with pytest.raises(UnknownModel, match="'nope' is not served here; this server serves: invert"):
        pool.admit("nope")
    assert pool.session_count == 0
