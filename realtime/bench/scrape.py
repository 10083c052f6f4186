"""The server's /metrics at one moment: CPU, memory, frames and model calls."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from realtime.bench.config import BenchConfig


@dataclass(frozen=True, slots=True)
class ServerSample:
    """The server's /metrics at one moment."""

    cpu_seconds: float
    rss_bytes: float | None
    frames: dict[str, float]
    """realtime_frames_total by outcome, for the bench's model and transport."""
    model_calls: float
    """realtime_worker_batches_total over the model's workers."""
    loop_lag: dict[float, float]
    """realtime_event_loop_lag_seconds: samples at or under each bucket's bound (+inf
    included); empty from a server that does not export it."""
    loop_lag_seconds: float
    """The lag's sum over those samples."""


def scrape(config: BenchConfig, model: str | None) -> ServerSample | None:
    """GET /metrics; None when the server does not export process_cpu_seconds_total."""
    request = urllib.request.Request(f"{config.url.rstrip('/')}/metrics")
    if config.api_key:
        request.add_header("Authorization", f"Bearer {config.api_key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    cpu: float | None = None
    rss: float | None = None
    frames: dict[str, float] = {}
    calls = 0.0
    lag: dict[float, float] = {}
    lag_seconds = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "process_cpu_seconds_total":
                cpu = sample.value
            elif sample.name == "process_resident_memory_bytes":
                rss = sample.value
            elif (
                sample.name == "realtime_frames_total"
                and sample.labels.get("transport") == config.transport
                and (model is None or sample.labels.get("model") == model)
            ):
                outcome = sample.labels.get("outcome", "")
                frames[outcome] = frames.get(outcome, 0.0) + sample.value
            elif sample.name == "realtime_worker_batches_total" and (
                model is None or sample.labels.get("model") == model
            ):
                calls += sample.value
            elif sample.name == "realtime_event_loop_lag_seconds_bucket":
                lag[float(sample.labels["le"])] = sample.value
            elif sample.name == "realtime_event_loop_lag_seconds_sum":
                lag_seconds = sample.value
    return None if cpu is None else ServerSample(cpu, rss, frames, calls, lag, lag_seconds)


async def scrape_async(config: BenchConfig, model: str | None) -> ServerSample | None:
    return await asyncio.to_thread(scrape, config, model)
