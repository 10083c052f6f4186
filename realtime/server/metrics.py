"""Prometheus metrics: GET /metrics. One registry per app, so tests can run several."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from realtime.server.loop_lag import LAG_INTERVAL_S
from session.pool import WorkerPool
from session.protocol import HOPS
from session.session import Output, Session

if TYPE_CHECKING:
    from realtime.server.worker import ModelWorker

HOP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """Every metric the server exports; sessions report through `meter`."""

    def __init__(self, pool: WorkerPool[ModelWorker]) -> None:
        self.registry = CollectorRegistry()
        labels = ["model", "transport"]
        self.sessions = Gauge(
            "realtime_sessions", "Sessions holding a slot.", labels, registry=self.registry
        )
        self.frames = Counter(
            "realtime_frames",
            "Frames by what became of them: received, sent, dropped, bad, failed.",
            [*labels, "outcome"],
            registry=self.registry,
        )
        self.hop_seconds = Histogram(
            "realtime_hop_seconds",
            "Seconds each hop of the data path took, per sent frame.",
            ["model", "hop"],
            buckets=HOP_BUCKETS,
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "realtime_event_loop_lag_seconds",
            "How much later than due the event loop ran a timer, sampled every "
            f"{LAG_INTERVAL_S:g} s: what every session's I/O waited then.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.refusals = Counter(
            "realtime_refusals",
            "Sessions refused, by the error code they were given.",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(WorkerCollector(pool))
        # process_cpu_seconds_total, process_resident_memory_bytes, open fds (Linux):
        # `realtime bench` divides the CPU seconds by the frames a run delivered.
        ProcessCollector(registry=self.registry)

    def meter(self, model: str, transport: str) -> SessionMeter:
        return SessionMeter(self, model, transport)

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics"""
        return Response(generate_latest(self.registry), media_type="text/plain; version=0.0.4")


class SessionMeter:
    """One session's share of the metrics: `update` after its counts change. Its
    labelled series are looked up once: a lookup per frame costs the loop more than
    the counting (docs/benchmarks.md, server overhead)."""

    def __init__(self, metrics: Metrics, model: str, transport: str) -> None:
        self.metrics = metrics
        self.labels = (model, transport)
        self._frames = {
            outcome: metrics.frames.labels(model, transport, outcome) for outcome in OUTCOMES
        }
        self._hop_seconds = {hop: metrics.hop_seconds.labels(model, hop) for hop in HOPS}
        self._reported = dict.fromkeys(OUTCOMES, 0)
        metrics.sessions.labels(*self.labels).inc()

    def update(self, session: Session) -> None:
        for outcome, now in _outcomes(session).items():
            if now > (reported := self._reported[outcome]):
                self._frames[outcome].inc(now - reported)
                self._reported[outcome] = now

    def sent(self, output: Output) -> None:
        for hop, ms in output.frame.timings_ms.items():
            if (series := self._hop_seconds.get(hop)) is not None:
                series.observe(ms / 1000)

    def released(self) -> None:
        self.metrics.sessions.labels(*self.labels).dec()


OUTCOMES = ("received", "sent", "dropped", "bad", "failed")


def _outcomes(session: Session) -> dict[str, int]:
    return {
        "received": session.stats.frames_received,
        "sent": session.stats.frames_sent,
        "dropped": session.dropped_frames,
        "bad": session.stats.bad_frames,
        "failed": session.stats.failed_frames,
    }


class WorkerCollector(Collector):
    """Each worker's busy time, read at scrape time: rate() of it is the busy ratio."""

    def __init__(self, pool: WorkerPool[ModelWorker]) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        busy = CounterMetricFamily(
            "realtime_worker_busy_seconds",
            "Seconds each worker spent in its model; rate() is its busy ratio.",
            labels=["worker", "model", "device"],
        )
        batches = CounterMetricFamily(
            "realtime_worker_batches",
            "Model calls each worker made.",
            labels=["worker", "model", "device"],
        )
        restarts = CounterMetricFamily(
            "realtime_worker_restarts",
            "Times each worker reloaded its model after repeated failures.",
            labels=["worker", "model", "device"],
        )
        for worker in self.pool.workers:
            labels = [worker.name, worker.model_id, worker.device]
            busy.add_metric(labels, worker.busy_seconds)
            batches.add_metric(labels, worker.batches)
            restarts.add_metric(labels, worker.restarts)
        sessions = GaugeMetricFamily(
            "realtime_worker_sessions",
            "Sessions pinned to each worker.",
            labels=["worker", "model", "device"],
        )
        for worker in self.pool.workers:
            sessions.add_metric(
                [worker.name, worker.model_id, worker.device], self.pool.sessions_on(worker)
            )
        yield busy
        yield batches
        yield restarts
        yield sessions
