"""WorkerPool: admission control and pinning of sessions to workers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from session.errors import ServerFull, UnknownModel


class Pinnable(Protocol):
    """What admission needs of a worker: who it is and which model it runs."""

    @property
    def name(self) -> str: ...

    @property
    def model_id(self) -> str: ...


W = TypeVar("W", bound=Pinnable)


class WorkerPool(Generic[W]):
    """`admit` pins a new session to the least busy worker of its model, or
    refuses it; `release` once the session's state is CLOSED."""

    def __init__(self, workers: Sequence[W], max_sessions: int) -> None:
        self.workers = list(workers)
        self.max_sessions = max_sessions
        self._sessions: Counter[str] = Counter()

    @property
    def model_ids(self) -> list[str]:
        return list(dict.fromkeys(worker.model_id for worker in self.workers))

    @property
    def session_count(self) -> int:
        return sum(self._sessions.values())

    @property
    def has_room(self) -> bool:
        return self.session_count < self.max_sessions

    def check_model(self, model_id: str) -> None:
        """Raise UnknownModel unless `model_id` is served here."""
        if model_id not in self.model_ids:
            served = ", ".join(self.model_ids)
            raise UnknownModel(
                f"model {model_id!r} is not served here; this server serves: {served}",
                field="model",
            )

    def admit(self, model_id: str) -> W:
        self.check_model(model_id)
        candidates = [worker for worker in self.workers if worker.model_id == model_id]
        if not self.has_room:
            raise ServerFull(
                f"server full: all {self.max_sessions} session slots are taken; try again later"
            )
        worker = min(candidates, key=lambda candidate: self._sessions[candidate.name])
        self._sessions[worker.name] += 1
        return worker

    def release(self, worker: W) -> None:
        assert self._sessions[worker.name] > 0, f"{worker.name} has no session to release"
        self._sessions[worker.name] -= 1

    def sessions_on(self, worker: W) -> int:
        return self._sessions[worker.name]
