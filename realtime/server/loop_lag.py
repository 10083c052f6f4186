"""The event loop's lag: how much later than due it runs a timer, for /metrics.

Everything a server process does for its sessions' I/O runs on one event loop,
so work that holds it (a burst of messages, a slow callback, a CPU starved by
other processes) delays every session at once. A timer due every
LAG_INTERVAL_S measures it: the time past its due time until it ran is what
anything scheduled then waited too.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Histogram

LAG_INTERVAL_S = 0.1
"""How often the lag is sampled: often enough to catch a stall of a tenth of a
second, rarely enough to cost nothing (10 wake-ups a second)."""


async def measure_loop_lag(histogram: Histogram, interval_s: float = LAG_INTERVAL_S) -> None:
    """Until cancelled: sleep `interval_s`, and observe how much longer it took."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval_s)
        histogram.observe(max(0.0, time.perf_counter() - started - interval_s))
