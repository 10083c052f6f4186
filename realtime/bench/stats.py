"""The numbers of a run: latency percentiles and Jain's fairness index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class LatencySummary:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    samples: int


def jain_index(values: Sequence[float]) -> float | None:
    """(sum x)^2 / (n sum x^2): 1 when every value is equal; None when all are 0."""
    squares = sum(value * value for value in values)
    if not values or squares == 0:
        return None
    return sum(values) ** 2 / (len(values) * squares)


def latency_summary(latencies_s: Sequence[float]) -> LatencySummary | None:
    if not latencies_s:
        return None
    ms = np.asarray(latencies_s) * 1000
    p50, p95, p99 = (float(value) for value in np.percentile(ms, [50, 95, 99]))
    return LatencySummary(p50, p95, p99, float(ms.max()), len(ms))
