"""Per-session limits: what one client may cost the server, and for how long.

Sans-I/O like the Session that applies them: every check takes `now`, a
monotonic time in seconds, from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SessionLimits:
    max_messages_per_s: float = 20.0
    """Control messages per second, with a burst of as many; the excess is refused."""
    handshake_timeout_s: float | None = 10.0
    """A session whose client sends no first frame (no first params, for type-to-image)
    this long after it could (`ready`, and its transport connected) is closed, so that
    idle connections cannot hold the server's slots. None: never."""
    idle_timeout_s: float | None = 300.0
    """A session that sends no frame and no params for this long is closed. None: never."""
    max_duration_s: float | None = None
    """A session is closed this long after it started. None: never."""
    max_image_size: int = 4096
    """Widest and tallest image decoded: larger ones are refused before decoding,
    so a small file cannot expand into gigabytes (a decompression bomb)."""
    max_image_pixels: int = 4096 * 2160
    """Most pixels (width x height) in an image decoded, a 4K frame: bounds the time
    and memory a decode takes, as `max_image_size` bounds each side."""


class MessageRate:
    """A token bucket: `rate` tokens a second, at most `rate` (and at least one) saved up."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._tokens = self.capacity
        self._updated_at = now

    def allow(self, now: float) -> bool:
        """Take a token for a message arriving at `now`; False when none is left."""
        elapsed = max(0.0, now - self._updated_at)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
