"""A thousand GPUs, simulated: sessions on a daily curve, routing, autoscaling, warm pools.

    .venv/bin/python -m benchmarks.cluster_sim                      # 1,000 GPUs, 15:30-17:30
    .venv/bin/python -m benchmarks.cluster_sim --gpus 10 --peak-rate 0.15 --hours 24 --start-hour 0
    .venv/bin/python -m benchmarks.cluster_sim --policy pow2 --warm-pool 0,4,16

A discrete-event simulation (no GPU, no server; stdlib `heapq` and `random`,
deterministic given --seed) of up to --gpus replicas, one GPU each, as Ray Serve
would run `realtime serve` replicas:

- Demand: Poisson arrivals whose rate follows a daily sinusoid (--peak-rate at
  --peak-hour, --peak-to-trough lower 12 hours away), plus a flash crowd (the rate
  times --surge for --surge-minutes from --surge-hour). Durations are lognormal
  (median --median-minutes, sigma --sigma: a long tail), cut at --max-minutes.
- A GPU: a batch of b frames takes `ms_per_frame * (f + (1 - f) * b)` (a fixed
  share f of a call is paid once per batch, fitted to the measured batching gain).
  Its sessions share it: each gets min(camera fps, frames the GPU makes / sessions).
  A replica takes at most `slots` sessions: the most that still get --min-fps.
- Routing (the Serve proxy): a new session tries a replica chosen by --policy;
  if it is full, the session backs off (0.05 s, doubling to 1 s) and tries again,
  until it gets a slot or has waited --wait-timeout seconds (then it is refused).
  `random`: one replica at random; `pow2`: the less loaded of two at random (Ray
  Serve's router); `least`: the least loaded of all (a global view).
- Autoscaling on ongoing requests (sessions + waiting ones), as Ray Serve's:
  every 10 s, desired = ceil(ongoing / (--target * slots)), within [1, --gpus];
  up after --upscale-delay, down after --downscale-delay. A new replica comes
  from the warm pool (--warm-start seconds: model in memory) when one is ready,
  else cold (--cold-start: node, image, weights); a used warm replica is
  replaced in the background (a cold start). Scaling down drains the least loaded
  replicas: no new sessions, and the GPU is freed when its last session ends.

Statistics count the sessions that arrive after --warmup-minutes (the cluster
starts sized for the rate then, with nobody on it) and at least --wait-timeout
before the end (so every one is placed or refused); GPU time counts from the
warm-up's end to the end. A session's fps is its frames over its life, or up to
the end for those still on.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from realtime.bench.table import markdown_table

POLICIES = ("random", "pow2", "least")
BACKOFF_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0)
"""Between a session's tries for a slot; the last repeats (Ray Serve's router backs off too)."""
AUTOSCALE_EVERY_S = 10.0
HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True)
class Gpu:
    """One GPU's speed and how its sessions share it.

    Defaults: `ms_per_frame` is an ASSUMPTION (no GPU was measured in this project
    yet): SD-Turbo, 1 step, 512x512 img2img at StreamDiffusion's published 10.6 ms a
    frame (RTX 4090, TensorRT), taken for one H100-class GPU. `batch_gain` is
    MEASURED: `benchmarks/batching.py`, `tiny`, 8 sessions, --max-batch 8 against 1:
    29.6 / 20.3 frames/s = 1.46 (on a CPU; a GPU likely gains more, so this is
    conservative)."""

    ms_per_frame: float = 10.6
    batch_gain: float = 1.46
    max_batch: int = 8
    camera_fps: float = 30.0

    @property
    def fixed_share(self) -> float:
        # Solves gain = B / (f + (1 - f) * B) for f, B = max_batch.
        b = self.max_batch
        return (b / self.batch_gain - b) / (1 - b)

    def call_ms(self, batch: int) -> float:
        return self.ms_per_frame * (self.fixed_share + (1 - self.fixed_share) * batch)

    def fps(self, sessions: int) -> float:
        """Frames a second each of `sessions` sessions gets (as many calls as batches)."""
        if sessions == 0:
            return 0.0
        batch = min(sessions, self.max_batch)
        gpu_fps = 1000 * batch / self.call_ms(batch)
        return min(self.camera_fps, gpu_fps / sessions)

    def busy(self, sessions: int) -> float:
        """Share of the time the GPU computes: 1 once its sessions get less than camera fps."""
        if sessions == 0:
            return 0.0
        batch = min(sessions, self.max_batch)
        return min(1.0, self.camera_fps * sessions * self.call_ms(batch) / (1000 * batch))

    def slots(self, min_fps: float) -> int:
        """The most sessions that each still get `min_fps`."""
        sessions = 1
        while self.fps(sessions + 1) >= min_fps:
            sessions += 1
        return sessions


@dataclass(frozen=True)
class Demand:
    peak_rate: float = 16.0
    """Sessions a second at the daily peak."""
    peak_to_trough: float = 4.0
    peak_hour: float = 20.0
    median_s: float = 180.0
    sigma: float = 1.0
    max_s: float = 4 * HOUR
    surge: float = 1.5
    surge_hour: float = 16.0
    surge_s: float = 15 * 60

    def rate(self, t: float) -> float:
        trough = self.peak_rate / self.peak_to_trough
        phase = 2 * math.pi * (t - self.peak_hour * HOUR) / DAY
        base = trough + (self.peak_rate - trough) * (1 + math.cos(phase)) / 2
        in_surge = 0 <= (t % DAY) - self.surge_hour * HOUR < self.surge_s
        return base * self.surge if in_surge else base

    def arrivals(self, rng: random.Random, start: float, end: float) -> Iterator[float]:
        """Poisson arrival times with rate(t), by thinning at the highest rate."""
        top = self.peak_rate * max(1.0, self.surge)
        t = start
        while True:
            t += rng.expovariate(top)
            if t >= end:
                return
            if rng.random() * top < self.rate(t):
                yield t

    def duration(self, rng: random.Random) -> float:
        return min(self.max_s, rng.lognormvariate(math.log(self.median_s), self.sigma))

    def mean_duration(self) -> float:
        return self.median_s * math.exp(self.sigma**2 / 2)  # the lognormal's, before the cut


@dataclass(frozen=True)
class Scenario:
    gpus: int = 1000
    policy: str = "pow2"
    min_fps: float = 20.0
    wait_timeout_s: float = 30.0
    target: float = 0.9
    """Autoscaling aims at this share of each replica's slots (Ray Serve's
    target_ongoing_requests = target * slots; max_ongoing_requests = slots)."""
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    warm_pool: int = 0
    warm_start_s: tuple[float, float] = (5.0, 10.0)
    cold_start_s: float = 60.0
    start_hour: float = 15.5
    hours: float = 2.0
    warmup_s: float = 15 * 60
    seed: int = 1
    gpu: Gpu = field(default_factory=Gpu)
    demand: Demand = field(default_factory=Demand)

    @property
    def slots(self) -> int:
        return self.gpu.slots(self.min_fps)

    @property
    def end_s(self) -> float:
        return (self.start_hour + self.hours) * HOUR


class State(Enum):
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"


class Replica:
    """A GPU running one replica. `frames` is what each of its sessions got so far,
    so a session's frames are `frames` at its end less `frames` at its start."""

    __slots__ = ("busy_s", "frames", "id", "last", "sessions", "state")

    def __init__(self, replica_id: int, now: float, state: State) -> None:
        self.id = replica_id
        self.state = state
        self.sessions = 0
        self.frames = 0.0
        self.busy_s = 0.0
        self.last = now

    def advance(self, now: float, fps: Sequence[float], busy: Sequence[float]) -> None:
        elapsed = now - self.last
        self.frames += fps[self.sessions] * elapsed
        self.busy_s += busy[self.sessions] * elapsed
        self.last = now


class Session:
    __slots__ = (
        "arrived",
        "duration",
        "frames_at_start",
        "measured",
        "replica",
        "started",
        "tries",
    )

    def __init__(self, arrived: float, duration: float, measured: bool) -> None:
        self.arrived = arrived
        self.duration = duration
        self.measured = measured
        self.tries = 0
        self.replica: Replica | None = None
        self.started = 0.0
        self.frames_at_start = 0.0


@dataclass
class Result:
    scenario: Scenario
    waits: list[float] = field(default_factory=list)
    """Seconds to a slot, of the measured sessions that got one."""
    refused: int = 0
    fps: list[float] = field(default_factory=list)
    """Mean fps each measured session got over its life (or up to the end)."""
    busy_s: float = 0.0
    gpu_s: float = 0.0
    """GPU-seconds held: replicas starting, serving and draining, and the warm pool."""
    peak_gpus: int = 0
    warm_starts: int = 0
    cold_starts: int = 0

    @property
    def sessions(self) -> int:
        return len(self.waits) + self.refused


# Event kinds, in the heap as (time, sequence, kind, payload).
ARRIVE, TRY, END, READY, POOL_READY, AUTOSCALE, MEASURE = range(7)


class Cluster:
    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        # A stream each, so that every policy and pool size sees the very same sessions.
        self.demand_rng = random.Random(f"{scenario.seed}/demand")
        self.rng = random.Random(f"{scenario.seed}/cluster")
        self.slots = scenario.slots
        self.fps = [scenario.gpu.fps(n) for n in range(self.slots + 1)]
        self.busy = [scenario.gpu.busy(n) for n in range(self.slots + 1)]
        self.events: list[tuple[float, int, int, object]] = []
        self.sequence = 0
        self.now = 0.0
        self.replicas: dict[int, Replica] = {}
        self.draining = 0
        self.next_id = 0
        # Serving replicas twice: a list to draw from at random, and buckets by load
        # (bucket n: replicas with n sessions, in insertion order) for the least loaded.
        self.serving: list[Replica] = []
        self.buckets: list[dict[int, Replica]] = [{} for _ in range(self.slots + 1)]
        self.active: dict[int, Session] = {}
        self.waiting = 0
        self.pool_ready = scenario.warm_pool
        self.held = 0  # GPUs held: replicas and the warm pool (ready or refilling)
        self.held_since = 0.0
        self.upscale_since: float | None = None
        self.downscale_since: float | None = None
        self.measuring = False
        self.last_measured = scenario.end_s - scenario.wait_timeout_s
        self.result = Result(scenario)

    # --- the event loop -------------------------------------------------------

    def at(self, when: float, kind: int, payload: object = None) -> None:
        self.sequence += 1
        heapq.heappush(self.events, (when, self.sequence, kind, payload))

    def run(self) -> Result:
        s = self.s
        start, end = s.start_hour * HOUR - s.warmup_s, s.end_s
        self.now = self.held_since = start
        self.start_initial_replicas(start)
        self.hold(s.warm_pool)
        arrivals = s.demand.arrivals(self.demand_rng, start, end)
        first = next(arrivals, None)
        if first is not None:
            self.at(first, ARRIVE)
        self.at(start + AUTOSCALE_EVERY_S, AUTOSCALE)
        self.at(start + s.warmup_s, MEASURE)
        while self.events and self.events[0][0] <= end:
            self.now, _, kind, payload = heapq.heappop(self.events)
            if kind == ARRIVE:
                self.arrive()
                upcoming = next(arrivals, None)
                if upcoming is not None:
                    self.at(upcoming, ARRIVE)
            elif kind == TRY:
                assert isinstance(payload, Session)
                self.place(payload)
            elif kind == END:
                assert isinstance(payload, Session)
                self.end(payload)
            elif kind == READY:
                assert isinstance(payload, Replica)
                self.ready(payload)
            elif kind == POOL_READY:
                self.pool_ready += 1
            elif kind == AUTOSCALE:
                self.autoscale()
                self.at(self.now + AUTOSCALE_EVERY_S, AUTOSCALE)
            elif kind == MEASURE:
                self.start_measuring()
        self.now = end
        self.finish()
        return self.result

    # --- sessions --------------------------------------------------------------

    def arrive(self) -> None:
        # Late arrivals are not counted: their wait might not be over at the end.
        measured = self.measuring and self.now < self.last_measured
        session = Session(self.now, self.s.demand.duration(self.demand_rng), measured)
        self.waiting += 1
        self.place(session)

    def place(self, session: Session) -> None:
        replica = self.choose()
        give_up = session.arrived + self.s.wait_timeout_s  # the same sum every try
        if replica is not None:
            self.waiting -= 1
            self.join(session, replica)
        elif self.now >= give_up:
            self.waiting -= 1
            self.result.refused += session.measured
        else:
            backoff = BACKOFF_S[min(session.tries, len(BACKOFF_S) - 1)]
            session.tries += 1
            self.at(min(self.now + backoff, give_up), TRY, session)

    def choose(self) -> Replica | None:
        """The replica the policy picks, or None when it is full (or none serve)."""
        if not self.serving:
            return None
        policy = self.s.policy
        if policy == "least":
            for bucket in self.buckets[: self.slots]:
                if bucket:
                    return next(iter(bucket.values()))
            return None
        count = len(self.serving)
        pick = self.serving[int(self.rng.random() * count)]
        if policy == "pow2" and count > 1:
            # A second, other replica (rng.sample would do it, three times slower).
            index = int(self.rng.random() * (count - 1))
            other = self.serving[index if self.serving[index] is not pick else count - 1]
            pick = pick if pick.sessions <= other.sessions else other
        return pick if pick.sessions < self.slots else None

    def join(self, session: Session, replica: Replica) -> None:
        self.change_load(replica, +1)
        session.replica = replica
        session.started = self.now
        session.frames_at_start = replica.frames
        self.active[id(session)] = session
        if session.measured:
            self.result.waits.append(self.now - session.arrived)
        self.at(self.now + session.duration, END, session)

    def end(self, session: Session) -> None:
        replica = session.replica
        assert replica is not None
        self.change_load(replica, -1)
        del self.active[id(session)]
        self.record_fps(session, replica)
        if replica.state is State.DRAINING and replica.sessions == 0:
            self.stop(replica)

    def record_fps(self, session: Session, replica: Replica) -> None:
        if session.measured and self.now > session.started:
            frames = replica.frames - session.frames_at_start
            self.result.fps.append(frames / (self.now - session.started))

    def change_load(self, replica: Replica, delta: int) -> None:
        replica.advance(self.now, self.fps, self.busy)
        if replica.state is State.SERVING:
            del self.buckets[replica.sessions][replica.id]
            self.buckets[replica.sessions + delta][replica.id] = replica
        replica.sessions += delta

    # --- replicas and GPUs ------------------------------------------------------

    def hold(self, gpus: int) -> None:
        """Counts GPU-seconds held up to now, then changes how many are held."""
        if self.measuring:
            self.result.gpu_s += self.held * (self.now - self.held_since)
        self.held_since = self.now
        self.held += gpus
        self.result.peak_gpus = max(self.result.peak_gpus, self.held)

    def start_initial_replicas(self, now: float) -> None:
        # Sized for the steady state at the start's rate, so the warm-up need not scale.
        ongoing = self.s.demand.rate(now) * self.s.demand.mean_duration()
        for _ in range(self.desired(ongoing)):
            self.ready(self.new_replica(State.STARTING))

    def new_replica(self, state: State) -> Replica:
        replica = Replica(self.next_id, self.now, state)
        self.next_id += 1
        self.replicas[replica.id] = replica
        self.hold(1)
        return replica

    def start_replica(self) -> None:
        replica = self.new_replica(State.STARTING)
        if self.pool_ready > 0:
            # A warm replica: the pool's GPU becomes it (held as the replica now),
            # and the pool boots a new one in its place (held as the pool).
            self.pool_ready -= 1
            self.at(self.now + self.s.cold_start_s, POOL_READY)
            self.at(self.now + self.rng.uniform(*self.s.warm_start_s), READY, replica)
            self.result.warm_starts += self.measuring
        else:
            self.at(self.now + self.s.cold_start_s, READY, replica)
            self.result.cold_starts += self.measuring

    def ready(self, replica: Replica) -> None:
        replica.advance(self.now, self.fps, self.busy)
        replica.state = State.SERVING
        self.serving.append(replica)
        self.buckets[replica.sessions][replica.id] = replica

    def drain(self, replica: Replica) -> None:
        replica.state = State.DRAINING
        self.draining += 1
        self.serving.remove(replica)
        del self.buckets[replica.sessions][replica.id]
        if replica.sessions == 0:
            self.stop(replica)

    def stop(self, replica: Replica) -> None:
        replica.advance(self.now, self.fps, self.busy)
        if self.measuring:
            self.result.busy_s += replica.busy_s
        del self.replicas[replica.id]
        self.draining -= replica.state is State.DRAINING
        self.hold(-1)

    # --- autoscaling ----------------------------------------------------------

    def desired(self, ongoing: float) -> int:
        wanted = math.ceil(ongoing / (self.s.target * self.slots))
        return max(1, min(self.s.gpus, wanted))

    def autoscale(self) -> None:
        desired = self.desired(len(self.active) + self.waiting)
        running = len(self.replicas) - self.draining
        # Held too long above (or below) what runs: as Ray Serve's up/downscale delays.
        self.upscale_since = self.since(self.upscale_since, desired > running)
        self.downscale_since = self.since(self.downscale_since, desired < running)
        if self.held_for(self.upscale_since, self.s.upscale_delay_s):
            # A draining replica still holds its GPU: at most --gpus in all.
            for _ in range(min(desired - running, self.s.gpus - len(self.replicas))):
                self.start_replica()
            self.upscale_since = None
        # Not during the warm-up: the cluster is still filling up then.
        elif self.measuring and self.held_for(self.downscale_since, self.s.downscale_delay_s):
            by_load = sorted(self.serving, key=lambda replica: replica.sessions)
            for replica in by_load[: running - desired]:
                self.drain(replica)
            self.downscale_since = None

    def since(self, since: float | None, holds: bool) -> float | None:
        if not holds:
            return None
        return self.now if since is None else since

    def held_for(self, since: float | None, delay_s: float) -> bool:
        return since is not None and self.now - since >= delay_s

    # --- statistics -----------------------------------------------------------

    def start_measuring(self) -> None:
        self.hold(0)
        for replica in self.replicas.values():
            replica.advance(self.now, self.fps, self.busy)
            replica.busy_s = 0.0
        self.measuring = True

    def finish(self) -> None:
        # Sessions still on the cluster count with the frames they got so far.
        for session in self.active.values():
            replica = session.replica
            assert replica is not None
            replica.advance(self.now, self.fps, self.busy)
            self.record_fps(session, replica)
        for replica in self.replicas.values():
            replica.advance(self.now, self.fps, self.busy)
            self.result.busy_s += replica.busy_s
        self.hold(0)


def simulate(scenario: Scenario) -> Result:
    if scenario.policy not in POLICIES:
        raise ValueError(f"policy: {scenario.policy!r} is not one of {', '.join(POLICIES)}")
    return Cluster(scenario).run()


# --- tables -----------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of them at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def refused_cell(result: Result) -> str:
    share = 100 * result.refused / result.sessions if result.sessions else 0.0
    return f"{result.refused} ({share:.2f} %)"


def capacity_table(gpu: Gpu, slots: int) -> str:
    rows = []
    for sessions in range(1, max(slots + 2, gpu.max_batch) + 1):
        batch = min(sessions, gpu.max_batch)
        rows.append(
            [
                f"{sessions}" + (" (slots)" if sessions == slots else ""),
                f"{gpu.call_ms(batch):.1f}",
                f"{gpu.fps(sessions):.1f}",
                f"{100 * gpu.busy(sessions):.0f} %",
            ]
        )
    header = ["sessions on a GPU", "ms per batch call", "fps per session", "GPU busy"]
    return markdown_table(header, rows)


def routing_row(result: Result) -> list[str]:
    return [
        result.scenario.policy,
        str(result.sessions),
        f"{percentile(result.waits, 0.5):.2f}",
        f"{percentile(result.waits, 0.99):.2f}",
        refused_cell(result),
        f"{sum(result.fps) / len(result.fps):.1f}" if result.fps else "",
        f"{percentile(result.fps, 0.05):.1f}",
        f"{100 * result.busy_s / result.gpu_s:.0f} %" if result.gpu_s else "",
        f"{result.gpu_s / HOUR:.0f}",
        str(result.peak_gpus),
    ]


def pool_row(result: Result) -> list[str]:
    return [
        str(result.scenario.warm_pool),
        f"{percentile(result.waits, 0.5):.2f}",
        f"{percentile(result.waits, 0.99):.2f}",
        refused_cell(result),
        f"{result.warm_starts} / {result.cold_starts}",
        f"{result.gpu_s / HOUR:.0f}",
    ]


def clock(hour: float) -> str:
    minutes = round(hour * 60) % (24 * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def scenario_line(s: Scenario) -> str:
    d = s.demand
    return (
        f"{s.gpus} GPUs at most, {s.slots} slots each (>= {s.min_fps:g} fps at "
        f"{s.gpu.ms_per_frame:g} ms/frame, batch gain {s.gpu.batch_gain:g} at "
        f"{s.gpu.max_batch}); {s.hours:g} h from {clock(s.start_hour)} after "
        f"{s.warmup_s / 60:g} min of warm-up; arrivals peak {d.peak_rate:g}/s at "
        f"{clock(d.peak_hour)}, trough {d.peak_rate / d.peak_to_trough:g}/s, surge x{d.surge:g} "
        f"for {d.surge_s / 60:g} min at {clock(d.surge_hour)}; durations lognormal median "
        f"{d.median_s / 60:g} min, sigma {d.sigma:g} (mean {d.mean_duration() / 60:.1f} min); "
        f"wait timeout {s.wait_timeout_s:g} s; autoscaling target {s.target:g} x slots, "
        f"up after {s.upscale_delay_s:g} s, down after {s.downscale_delay_s:g} s, cold start "
        f"{s.cold_start_s:g} s, warm {s.warm_start_s[0]:g}-{s.warm_start_s[1]:g} s; "
        f"seed {s.seed}."
    )


def report(base: Scenario, policies: Sequence[str], pools: Sequence[int]) -> str:
    """The three tables: one GPU's capacity, the policies, then warm pool sizes."""
    parts = [scenario_line(base), "", capacity_table(base.gpu, base.slots), ""]
    header = ["routing", "sessions", "wait p50 s", "wait p99 s", "refused"]
    header += ["fps mean", "fps p5", "GPU busy", "GPU-hours", "GPUs at peak"]
    results = {policy: simulate(replace(base, policy=policy)) for policy in policies}
    parts += [markdown_table(header, [routing_row(r) for r in results.values()]), ""]
    rows = []
    for pool in pools:
        same = pool == base.warm_pool and base.policy in results
        result = results[base.policy] if same else simulate(replace(base, warm_pool=pool))
        rows.append(pool_row(result))
    header = [f"warm pool ({base.policy})", "wait p50 s", "wait p99 s", "refused"]
    header += ["warm / cold starts", "GPU-hours (with the pool)"]
    parts.append(markdown_table(header, rows))
    return "\n".join(parts)


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def parse_args(argv: Sequence[str] | None = None) -> tuple[Scenario, list[str], list[int]]:
    parser = argparse.ArgumentParser(
        "benchmarks.cluster_sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults, gpu, demand = Scenario(), Gpu(), Demand()
    add = parser.add_argument
    add("--gpus", type=int, default=defaults.gpus, help="most replicas, one GPU each")
    add("--policy", choices=POLICIES, action="append", help="default: all three")
    add("--warm-pool", type=numbers, default=[0, 2, 8, 32], help="sizes, e.g. 0,2,8,32")
    add("--hours", type=float, default=defaults.hours)
    add("--start-hour", type=float, default=defaults.start_hour)
    add("--warmup-minutes", type=float, default=defaults.warmup_s / 60)
    add("--peak-rate", type=float, default=demand.peak_rate, help="sessions a second")
    add("--peak-to-trough", type=float, default=demand.peak_to_trough)
    add("--peak-hour", type=float, default=demand.peak_hour)
    add("--surge", type=float, default=demand.surge, help="rate multiplier; 1: none")
    add("--surge-hour", type=float, default=demand.surge_hour)
    add("--surge-minutes", type=float, default=demand.surge_s / 60)
    add("--median-minutes", type=float, default=demand.median_s / 60)
    add("--sigma", type=float, default=demand.sigma, help="of the lognormal durations")
    add("--max-minutes", type=float, default=demand.max_s / 60)
    add("--ms-per-frame", type=float, default=gpu.ms_per_frame, help="batch of 1")
    add("--batch-gain", type=float, default=gpu.batch_gain, help="at --max-batch")
    add("--max-batch", type=int, default=gpu.max_batch)
    add("--camera-fps", type=float, default=gpu.camera_fps)
    add("--min-fps", type=float, default=defaults.min_fps, help="sets the slots per GPU")
    add("--wait-timeout", type=float, default=defaults.wait_timeout_s)
    add("--target", type=float, default=defaults.target, help="share of slots aimed at")
    add("--upscale-delay", type=float, default=defaults.upscale_delay_s)
    add("--downscale-delay", type=float, default=defaults.downscale_delay_s)
    add("--cold-start", type=float, default=defaults.cold_start_s)
    add("--warm-start", type=float, nargs=2, default=defaults.warm_start_s)
    add("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    policies = args.policy or list(POLICIES)
    scenario = Scenario(
        gpus=args.gpus,
        policy="pow2" if "pow2" in policies else policies[0],
        min_fps=args.min_fps,
        wait_timeout_s=args.wait_timeout,
        target=args.target,
        upscale_delay_s=args.upscale_delay,
        downscale_delay_s=args.downscale_delay,
        warm_pool=args.warm_pool[0],
        warm_start_s=(args.warm_start[0], args.warm_start[1]),
        cold_start_s=args.cold_start,
        start_hour=args.start_hour,
        hours=args.hours,
        warmup_s=args.warmup_minutes * 60,
        seed=args.seed,
        gpu=Gpu(args.ms_per_frame, args.batch_gain, args.max_batch, args.camera_fps),
        demand=Demand(
            peak_rate=args.peak_rate,
            peak_to_trough=args.peak_to_trough,
            peak_hour=args.peak_hour,
            median_s=args.median_minutes * 60,
            sigma=args.sigma,
            max_s=args.max_minutes * 60,
            surge=args.surge,
            surge_hour=args.surge_hour,
            surge_s=args.surge_minutes * 60,
        ),
    )
    return scenario, policies, args.warm_pool


def main() -> None:
    scenario, policies, pools = parse_args()
    started = time.perf_counter()
    print(report(scenario, policies, pools))
    print(f"simulated in {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
