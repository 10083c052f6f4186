"""BatchGathering, driven with a fake clock: what a worker takes into a model call, and when."""

import pytest

from session.batching import GATHER_SHARE, BatchGathering, Gather


def after_a_call_of(seconds: float, max_batch: int = 8) -> BatchGathering:
    gathering = BatchGathering(max_batch)
    gathering.call_ended(seconds)
    return gathering


def test_with_nothing_pending_it_waits_for_a_job_without_a_deadline() -> None:
    assert after_a_call_of(0.5).decide(pending=0, sessions=4, now=10.0) == Gather(0, None)


def test_the_first_call_waits_for_nobody() -> None:
    gathering = BatchGathering(max_batch=8)  # no call yet: nothing to take a share of
    assert gathering.decide(pending=1, sessions=4, now=10.0) == Gather(1)


def test_a_job_of_every_session_is_taken_at_once() -> None:
    assert after_a_call_of(0.5).decide(pending=4, sessions=4, now=10.0) == Gather(4)


def test_fewer_wait_at_most_the_gather_share_of_the_last_call() -> None:
    gathering = after_a_call_of(0.5)
    deadline = 10.0 + GATHER_SHARE * 0.5
    assert gathering.decide(pending=1, sessions=4, now=10.0) == Gather(0, deadline)
    # Another session's job arrives: still short of all four, the deadline does not move.
    assert gathering.decide(pending=2, sessions=4, now=10.03) == Gather(0, deadline)
    assert gathering.decide(pending=2, sessions=4, now=deadline - 1e-9).take == 0
    assert gathering.decide(pending=2, sessions=4, now=deadline) == Gather(2)


def test_the_wait_follows_the_last_call() -> None:
    gathering = after_a_call_of(2.0)
    assert gathering.decide(pending=1, sessions=2, now=0.0) == Gather(0, 0.2)
    assert gathering.decide(pending=1, sessions=2, now=0.2) == Gather(1)
    gathering.call_ended(0.1)
    decision = gathering.decide(pending=1, sessions=2, now=5.0)
    assert decision.take == 0
    assert decision.wait_until == pytest.approx(5.01)


def test_the_last_job_to_come_ends_the_wait_before_the_deadline() -> None:
    gathering = after_a_call_of(1.0)
    assert gathering.decide(pending=1, sessions=3, now=0.0).wait_until == 0.1
    assert gathering.decide(pending=3, sessions=3, now=0.02) == Gather(3)


def test_each_gathering_starts_with_its_own_first_job() -> None:
    gathering = after_a_call_of(1.0)
    gathering.decide(pending=1, sessions=2, now=0.0)
    assert gathering.decide(pending=1, sessions=2, now=0.1) == Gather(1)
    # The next batch's wait is measured from its own first job, not the last deadline.
    decision = gathering.decide(pending=1, sessions=2, now=3.0)
    assert decision.take == 0
    assert decision.wait_until == pytest.approx(3.1)


def test_a_batch_is_full_at_max_batch() -> None:
    gathering = after_a_call_of(1.0, max_batch=8)
    assert gathering.decide(pending=8, sessions=12, now=0.0) == Gather(8)
    assert gathering.decide(pending=12, sessions=12, now=1.0) == Gather(8)
    assert gathering.decide(pending=5, sessions=12, now=2.0).take == 0
    assert gathering.decide(pending=5, sessions=12, now=2.1) == Gather(5)


def test_sessions_the_worker_does_not_know_yet_are_not_waited_for() -> None:
    # A new session has no model state until its first job is taken.
    assert after_a_call_of(1.0).decide(pending=1, sessions=0, now=0.0) == Gather(1)


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        BatchGathering(0)


def simulate(
    gathering: BatchGathering, resubmit_after: list[float], call_s: float, calls: int
) -> tuple[list[int], list[float]]:
    """A worker whose sessions all have a job pending at 0 and resubmit
    `resubmit_after[i]` seconds after their result, for a model call of `call_s`.
    Returns the batch sizes and how long each batch's first job waited for it."""
    now = 0.0
    pending_since = {session: 0.0 for session in range(len(resubmit_after))}
    known: set[int] = set()
    sizes, waits = [], []
    for _ in range(calls):
        for _ in range(100):  # each event or deadline, until the worker takes its jobs
            pending = sorted((at, s) for s, at in pending_since.items() if at <= now)
            gather = gathering.decide(len(pending), len(known), now)
            if gather.take:
                break
            coming = [at for at in pending_since.values() if at > now]
            now = min([*coming, *([gather.wait_until] if gather.wait_until else [])])
        else:
            raise AssertionError(f"the jobs pending at {now} are never taken")
        taken = [session for _, session in pending[: gather.take]]
        waits.append(now - pending[0][0])
        sizes.append(len(taken))
        known.update(taken)
        for session in taken:
            del pending_since[session]
        now += call_s
        gathering.call_ended(call_s)
        for session in taken:
            pending_since[session] = now + resubmit_after[session]
    return sizes, waits


def test_sessions_that_resubmit_one_after_another_share_full_batches() -> None:
    staggered = [0.0, 0.01, 0.02, 0.03]  # the event loop hands the results back in turn
    sizes, waits = simulate(BatchGathering(8), staggered, call_s=1.0, calls=6)
    assert sizes == [4] * 6
    assert max(waits) <= GATHER_SHARE * 1.0
    # Without the wait, the first session back runs alone every other call.
    sizes, _ = simulate(BatchGathering(8, share=0.0), staggered, call_s=1.0, calls=6)
    assert sizes == [4, 1, 4, 1, 4, 1]


def test_a_session_that_stops_sending_costs_the_others_one_share_of_a_call() -> None:
    sizes, waits = simulate(BatchGathering(8), [0.0, 0.0, 0.0, 1e9], call_s=0.5, calls=4)
    assert sizes == [4, 3, 3, 3]
    assert waits[1:] == [pytest.approx(GATHER_SHARE * 0.5)] * 3
