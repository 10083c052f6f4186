"""RestartPolicy: when a worker's model is taken to be broken, and how its reload is retried.

A model that raises fails the frames of that call (`model_error`, or
`out_of_memory`: `failure_code`), and the worker goes on. One that fails
`restart_after` calls in a row is taken to be broken (a corrupted CUDA context,
weights turned to NaN, a leak): the worker drops it and loads a fresh one. A
failure the model recovered from (out of memory, after freeing what it could)
says nothing about its health, so it does not count; a success ends the row.

A reload that fails is retried after `reload_backoff_s`, doubling each time up to
`max_reload_backoff_s`, for as long as the worker runs: the cause may pass
(memory freed by another process, a file restored), and the server stays up for
its other models. Meanwhile the model is UNAVAILABLE and every frame fails at
once with `model_unavailable` rather than wait an unknown time; once it is
reloaded, the frames that waited through the reload (and the last failed call's)
fail with `model_restarted`, so every session with a frame in the worker learns
of the restart.

Sans-I/O: the worker's thread reports what happened, with `now` (monotonic
seconds) where a time matters; nothing here reads a clock, loads or waits.
"""

from __future__ import annotations

import enum

from session.protocol import ErrorCode


class ModelHealth(enum.Enum):
    SERVING = "serving"
    """The model runs frames."""
    RELOADING = "reloading"
    """A reload is under way; frames wait in the worker."""
    UNAVAILABLE = "unavailable"
    """The last reload failed; frames fail at once until the next try."""


def failure_code(*, out_of_memory: bool) -> str:
    """The code of the frames of a model call that raised."""
    return ErrorCode.OUT_OF_MEMORY if out_of_memory else ErrorCode.MODEL_ERROR


class RestartPolicy:
    """Per worker: report every model call (`call_succeeded`, `call_failed`); when
    `restart_due`, `restart_began`, then report each reload attempt
    (`reload_failed(now)` says how long until the next, which waits for `retry_due(now)`
    and `reload_began`; `reload_succeeded`).
    `held_code` is the code of a frame answered without running meanwhile."""

    def __init__(
        self,
        restart_after: int = 5,
        reload_backoff_s: float = 1.0,
        max_reload_backoff_s: float = 60.0,
    ) -> None:
        if restart_after < 1:
            raise ValueError(f"restart_after must be at least 1, not {restart_after}")
        self.restart_after = restart_after
        """Calls failing in a row (recovered ones aside) after which the model is reloaded."""
        self.reload_backoff_s = reload_backoff_s
        self.max_reload_backoff_s = max_reload_backoff_s
        self.health = ModelHealth.SERVING
        self.failed_in_a_row = 0
        self.restarts = 0
        """Successful reloads of the model after it kept failing."""
        self.reload_attempts = 0
        """Reloads tried in the current restart."""
        self.retry_at: float | None = None
        """While UNAVAILABLE: when the next reload is due (monotonic seconds)."""
        self._backoff_s = reload_backoff_s

    # Model calls

    def call_succeeded(self) -> None:
        self.failed_in_a_row = 0

    def call_failed(self, *, recovered: bool) -> None:
        """A model call raised; `recovered`: the model recovered from it (out of
        memory, freed), which does not count toward a restart."""
        if not recovered:
            self.failed_in_a_row += 1

    @property
    def restart_due(self) -> bool:
        """The model failed `restart_after` calls in a row: drop it and reload it."""
        return self.health is ModelHealth.SERVING and self.failed_in_a_row >= self.restart_after

    # Reloads

    def restart_began(self) -> None:
        """The worker dropped its model and reloads it (the first attempt, at once)."""
        assert self.restart_due, "no restart is due"
        self.health = ModelHealth.RELOADING
        self.reload_attempts = 1
        self._backoff_s = self.reload_backoff_s

    def reload_failed(self, now: float) -> float:
        """The reload attempt failed at `now`: the model is UNAVAILABLE until `retry_at`.
        Returns the backoff, the seconds until then: `reload_backoff_s` after the first
        failure, twice the last after each next one, at most `max_reload_backoff_s`."""
        assert self.health is ModelHealth.RELOADING, self.health
        backoff = self._backoff_s
        self.health = ModelHealth.UNAVAILABLE
        self.retry_at = now + backoff
        self._backoff_s = min(backoff * 2, self.max_reload_backoff_s)
        return backoff

    def retry_in(self, now: float) -> float:
        """Seconds from `now` until the next reload is due; 0 when it is (or none waits)."""
        return 0.0 if self.retry_at is None else max(self.retry_at - now, 0.0)

    def retry_due(self, now: float) -> bool:
        """While UNAVAILABLE: the next reload is due at `now`."""
        return self.retry_at is not None and now >= self.retry_at

    def reload_began(self) -> None:
        """The next reload attempt starts (after `retry_due`)."""
        assert self.health is ModelHealth.UNAVAILABLE, self.health
        self.health = ModelHealth.RELOADING
        self.reload_attempts += 1
        self.retry_at = None

    def reload_succeeded(self) -> None:
        """A fresh model is loaded and warm: serve, with a clean count of failures."""
        assert self.health is ModelHealth.RELOADING, self.health
        self.health = ModelHealth.SERVING
        self.failed_in_a_row = 0
        self.restarts += 1

    @property
    def held_code(self) -> str:
        """The code of a frame the worker answers without running it: while the model
        is UNAVAILABLE, `model_unavailable`; once it is SERVING again, for the frames
        that were held through the restart, `model_restarted`. (While RELOADING,
        frames wait: none is answered.)"""
        assert self.health is not ModelHealth.RELOADING, "frames wait during a reload"
        return (
            ErrorCode.MODEL_UNAVAILABLE
            if self.health is ModelHealth.UNAVAILABLE
            else ErrorCode.MODEL_RESTARTED
        )
