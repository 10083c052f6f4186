"""benchmarks/cluster_sim.py on small clusters: what its tables must say whatever the speed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from benchmarks.cluster_sim import (
    Demand,
    Gpu,
    Result,
    Scenario,
    parse_args,
    percentile,
    report,
    simulate,
)


def scenario(gpus: int, peak_rate: float, **changes: Any) -> Scenario:
    """Six hours on a small cluster, with the default GPU and a surge at 16:00."""
    demand = Demand(peak_rate=peak_rate)
    base = Scenario(gpus=gpus, start_hour=14, hours=6, warmup_s=600, demand=demand)
    return replace(base, **changes)


def test_a_gpu_holds_the_sessions_that_get_the_minimum_fps() -> None:
    gpu = Gpu()
    rates = [gpu.fps(sessions) for sessions in range(1, 13)]
    assert rates == sorted(rates, reverse=True) and rates[0] == gpu.camera_fps
    assert gpu.fps(gpu.slots(20)) >= 20 > gpu.fps(gpu.slots(20) + 1)
    # Eight sessions batched make batch_gain times the frames of one call at a time.
    assert 8 * gpu.fps(8) == pytest.approx(gpu.batch_gain * 1000 / gpu.ms_per_frame)
    assert all(0 < gpu.busy(sessions) <= 1 for sessions in range(1, 13))


def test_with_capacity_far_above_demand_nobody_waits_or_is_refused() -> None:
    for policy in ("random", "pow2", "least"):
        result = simulate(scenario(50, 0.003, policy=policy))
        assert result.sessions > 20
        assert result.refused == 0 and max(result.waits) == 0
        assert sum(result.fps) / len(result.fps) > 0.99 * Gpu().camera_fps


def test_one_gpu_under_heavy_demand_refuses_sessions_and_is_busy() -> None:
    result = simulate(scenario(1, 1.0))
    assert result.refused > result.sessions / 2
    assert max(result.waits) <= result.scenario.wait_timeout_s
    assert result.peak_gpus == 1 and result.busy_s > 0.95 * result.gpu_s
    slots = result.scenario.slots
    assert min(result.fps) >= Gpu().fps(slots) - 1e-9


def loaded(policy: str, seed: int) -> Result:
    # At the evening peak about 80 % of what 30 GPUs hold, with no surge above it.
    base = scenario(30, 0.45, policy=policy, seed=seed)
    return simulate(replace(base, demand=replace(base.demand, surge=1.0)))


@pytest.mark.parametrize("seed", [1, 2])
def test_in_a_loaded_cluster_a_better_view_waits_less(seed: int) -> None:
    random, pow2, least = (loaded(policy, seed) for policy in ("random", "pow2", "least"))
    assert random.sessions == pow2.sessions == least.sessions  # the same sessions
    waits = [percentile(result.waits, 0.99) for result in (random, pow2, least)]
    assert waits[0] > waits[1] >= waits[2]
    assert sum(random.waits) > sum(pow2.waits) >= sum(least.waits)


def test_a_warm_pool_holds_its_gpus_and_starts_replicas_warm() -> None:
    # The 16:00 surge (rate x1.5) needs replicas faster than cold starts bring them.
    cold = simulate(scenario(30, 0.4))
    warm = simulate(scenario(30, 0.4, warm_pool=4))
    assert cold.sessions == warm.sessions
    assert cold.warm_starts == 0 < cold.cold_starts
    assert warm.warm_starts > warm.cold_starts
    assert cold.peak_gpus <= 30 and warm.peak_gpus <= 30 + 4
    assert warm.gpu_s > cold.gpu_s  # the pool is paid for
    assert percentile(warm.waits, 0.99) < percentile(cold.waits, 0.99)
    assert warm.refused < cold.refused


def test_the_same_seed_gives_the_same_tables() -> None:
    base = scenario(10, 0.2, hours=2)
    tables = report(base, ["random", "pow2"], [0, 2])
    assert report(base, ["random", "pow2"], [0, 2]) == tables
    assert report(replace(base, seed=2), ["random", "pow2"], [0, 2]) != tables
    assert tables.count("| random |") == 1 and tables.count("| pow2 |") == 1


def test_the_command_line_builds_the_scenario() -> None:
    argv = ["--gpus", "3", "--policy", "random", "--policy", "least", "--warm-pool", "2,0"]
    argv += ["--surge", "1", "--ms-per-frame", "20", "--seed", "7"]
    base, policies, pools = parse_args(argv)
    assert (base.gpus, base.policy, base.warm_pool, base.seed) == (3, "random", 2, 7)
    assert policies == ["random", "least"] and pools == [2, 0]
    assert base.demand.surge == 1 and base.gpu.ms_per_frame == 20
    assert base.slots == Gpu(ms_per_frame=20).slots(base.min_fps) < Scenario().slots
