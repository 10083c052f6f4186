"""RestartPolicy, driven with a fake clock: when a model is reloaded, and the backoff of reloads."""

import pytest

from session.restarts import ModelHealth, RestartPolicy, failure_code


def failing(policy: RestartPolicy, times: int) -> RestartPolicy:
    for _ in range(times):
        policy.call_failed(recovered=False)
    return policy


def restarting(**settings: float) -> RestartPolicy:
    policy = failing(RestartPolicy(restart_after=1, **settings), 1)
    policy.restart_began()
    return policy


def test_a_failed_call_is_a_model_error_unless_it_ran_out_of_memory() -> None:
    assert failure_code(out_of_memory=False) == "model_error"
    assert failure_code(out_of_memory=True) == "out_of_memory"


def test_a_restart_is_due_after_restart_after_failures_in_a_row() -> None:
    policy = failing(RestartPolicy(restart_after=3), 2)
    assert not policy.restart_due
    failing(policy, 1)
    assert policy.restart_due
    assert policy.failed_in_a_row == 3


def test_a_success_ends_the_row() -> None:
    policy = failing(RestartPolicy(restart_after=3), 2)
    policy.call_succeeded()
    failing(policy, 2)
    assert not policy.restart_due
    assert policy.failed_in_a_row == 2


def test_failures_the_model_recovered_from_do_not_count_nor_end_the_row() -> None:
    policy = RestartPolicy(restart_after=1)
    for _ in range(10):  # out of memory, freed: the model is fine
        policy.call_failed(recovered=True)
    assert not policy.restart_due
    policy = failing(RestartPolicy(restart_after=3), 2)
    policy.call_failed(recovered=True)
    assert not policy.restart_due
    failing(policy, 1)
    assert policy.restart_due


def test_a_restart_reloads_at_once_and_nothing_else_is_due_meanwhile() -> None:
    policy = failing(RestartPolicy(restart_after=2), 2)
    policy.restart_began()
    assert policy.health is ModelHealth.RELOADING
    assert policy.reload_attempts == 1
    assert not policy.restart_due  # one restart at a time
    with pytest.raises(AssertionError):
        RestartPolicy().restart_began()  # none is due


def test_reloads_back_off_doubling_up_to_the_cap() -> None:
    policy = restarting(reload_backoff_s=1.0, max_reload_backoff_s=5.0)
    now, backoffs, attempts_at = 100.0, [], [100.0]
    for _ in range(5):
        backoffs.append(policy.reload_failed(now))
        assert policy.health is ModelHealth.UNAVAILABLE
        assert policy.retry_at == now + backoffs[-1]
        assert not policy.retry_due(now + backoffs[-1] - 0.001)
        now += backoffs[-1]
        assert policy.retry_due(now)
        policy.reload_began()
        attempts_at.append(now)
    assert backoffs == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert attempts_at == [100.0, 101.0, 103.0, 107.0, 112.0, 117.0]
    assert policy.reload_attempts == 6


def test_the_time_left_before_the_next_reload() -> None:
    policy = restarting(reload_backoff_s=2.0)
    policy.reload_failed(10.0)
    assert policy.retry_in(10.5) == 1.5
    assert policy.retry_in(12.0) == 0.0
    assert policy.retry_in(13.0) == 0.0  # late, not negative


def test_frames_fail_as_unavailable_until_the_reload_then_as_restarted() -> None:
    policy = restarting()
    policy.reload_failed(0.0)
    assert policy.held_code == "model_unavailable"
    policy.reload_began()
    with pytest.raises(AssertionError):
        policy.held_code  # noqa: B018 (while reloading, frames wait: none is answered)
    policy.reload_succeeded()
    assert policy.health is ModelHealth.SERVING
    assert policy.held_code == "model_restarted"


def test_a_reload_starts_the_count_afresh_and_the_next_restart_the_backoff() -> None:
    policy = failing(RestartPolicy(restart_after=2, reload_backoff_s=1.0), 2)
    policy.restart_began()
    assert policy.reload_failed(0.0) == 1.0
    policy.reload_began()
    assert policy.reload_failed(1.0) == 2.0
    policy.reload_began()
    policy.reload_succeeded()
    assert (policy.restarts, policy.failed_in_a_row, policy.retry_at) == (1, 0, None)
    failing(policy, 1)
    assert not policy.restart_due
    failing(policy, 1)
    policy.restart_began()
    assert policy.reload_attempts == 1
    assert policy.reload_failed(50.0) == 1.0  # the second restart backs off from the start
    policy.reload_began()
    policy.reload_succeeded()
    assert policy.restarts == 2


def test_restart_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="restart_after"):
        RestartPolicy(restart_after=0)
