"""BatchGathering: when a worker takes its pending jobs into a model call, and how many.

Sessions pinned to a worker hand it at most one job each (Session.next_job), so a
worker's pending jobs are bounded by its sessions, and a batch is full when it
holds a job of each (up to `max_batch`). The sessions of the last batch resubmit
only once the event loop has handled their results, a little after one another:
a worker that took its jobs the moment one was pending would split its sessions
into groups that take turns, each in a half-full batch. So once a job is
pending, the worker waits for the rest of its sessions, but at most GATHER_SHARE
of its last model call: at most 10 % more latency, for batches that are full.

Sans-I/O: the worker's thread asks `decide` with the time (`now`, monotonic
seconds) whenever a job arrives or the deadline it was given passes; nothing here
reads a clock or waits.
"""

from __future__ import annotations

from dataclasses import dataclass

GATHER_SHARE = 0.1
"""A worker waits at most this share of its last model call for more sessions' frames
to join a batch: at most 10 % more latency, for batches that are full."""


@dataclass(frozen=True, slots=True)
class Gather:
    """One decision: take the `take` oldest pending jobs now, or (`take` 0) wait."""

    take: int
    """How many pending jobs to take, oldest first; 0: none yet."""
    wait_until: float | None = None
    """With `take` 0, when to ask again unless a job arrives first; None: only when
    a job arrives (nothing is pending)."""


class BatchGathering:
    """Per worker: `decide(pending, sessions, now)` whenever the pending jobs change or
    the deadline of the last decision passes, take what it says; `call_ended(seconds)`
    after each model call, so the wait follows the model's speed.

    The contract:
    - nothing pending: wait for a job, with no deadline;
    - as many jobs pending as the batch can hold (a job of each of the worker's
      `sessions`, but no more than `max_batch`): take them at once;
    - fewer: wait until `share` of the last call has passed since the first `decide`
      that saw a job pending (the first call: not at all), then take what is pending;
    - never more than `max_batch`.
    """

    def __init__(self, max_batch: int, share: float = GATHER_SHARE) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.max_batch = max_batch
        self.share = share
        self.last_call_s = 0.0
        """How long the last model call took: the gathering wait is a share of it."""
        self._deadline: float | None = None
        """When the gathering that began with the first pending job ends."""

    def call_ended(self, seconds: float) -> None:
        """A model call took `seconds`."""
        self.last_call_s = seconds

    def decide(self, pending: int, sessions: int, now: float) -> Gather:
        """`pending` jobs wait in the worker, which holds `sessions` sessions' model
        state (the sessions that can hand it a job; those pinned and not yet run
        count once their first job is taken). `now`: monotonic seconds."""
        if pending <= 0:
            self._deadline = None
            return Gather(0)
        if self._deadline is None:
            self._deadline = now + self.share * self.last_call_s
        full = min(self.max_batch, sessions)
        if pending >= full or now >= self._deadline:
            self._deadline = None
            return Gather(min(pending, self.max_batch))
        return Gather(0, self._deadline)
