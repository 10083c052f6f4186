"""`realtime bench` against a real `realtime serve --model invert` on loopback.

Only the report's shape and its internal consistency are checked, never speed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import StartServer

from realtime.bench.config import BenchConfig
from realtime.bench.harness import ServerProcess
from realtime.bench.run import latency_timeline, run_bench
from realtime.bench.stats import jain_index


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--max-sessions", "4")


def bench(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if cache is not None:
        env["REALTIME_CACHE"] = str(cache)
    done = subprocess.run(
        [sys.executable, "-m", "realtime", "bench", *args],
        capture_output=True,
        timeout=240,
        env=env,
    )
    # Decoded by hand: text mode would turn the progress line's \r into \n.
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def bench_json(*args: str, cache: Path | None = None) -> dict[str, Any]:
    done = bench("--json", *args, cache=cache)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = orjson.loads(done.stdout)
    return report


def check_report(report: dict[str, Any], *, sessions: int, transport: str) -> None:
    assert report["transport"] == transport
    assert report["model"] == "invert"
    assert report["sessions"] == sessions == len(report["per_session"])
    assert report["duration_s"] > 0
    per_session = report["per_session"]
    assert all(session["outputs"] > 0 for session in per_session)
    assert report["outputs"] == sum(session["outputs"] for session in per_session)
    assert report["frames_sent"] == sum(session["frames_sent"] for session in per_session)
    assert report["frames_sent"] >= report["outputs"] > 0
    assert report["dropped_frames"] == sum(session["dropped_frames"] for session in per_session)
    assert 0 <= report["dropped_frames"] <= report["frames_sent"]
    rates = [session["fps"] for session in per_session]
    assert report["fps_min"] == min(rates) and report["fps_max"] == max(rates)
    assert report["fps_min"] <= report["fps_mean"] <= report["fps_max"]
    assert report["aggregate_fps"] == pytest.approx(report["outputs"] / report["duration_s"])
    assert report["aggregate_fps"] == pytest.approx(sum(rates))
    assert 0 < report["fairness"] <= 1 + 1e-9
    latency = report["latency"]
    assert latency["samples"] == report["outputs"]
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert report["latency_measured"]
    server = report["server"]
    assert server["cpu_seconds"] > 0
    assert server["cpu_per_frame"] == pytest.approx(server["cpu_seconds"] / report["outputs"])
    assert server["rss_start_bytes"] > 0 and server["rss_end_bytes"] > 0
    assert server["frames_sent"] > 0
    assert 0 < server["model_calls"] <= server["frames_sent"]
    client = report["client"]
    assert client["cpu_seconds"] >= 0 and client["cpus"] >= 1


def test_websocket_sessions_report_fps_latency_drops_fairness_and_cpu(
    server: ServerProcess,
) -> None:
    report = bench_json(
        "--url", server.http_url, "--model", "invert", "--sessions", "2", "--duration", "2",
        "--fps", "20", "--size", "320x240", "--quality", "70", "--warmup", "0.5", "--quiet",
    )  # fmt: skip
    check_report(report, sessions=2, transport="websocket")
    assert (report["width"], report["height"], report["quality"]) == (320, 240, 70)
    assert report["fps"] == 20
    assert all(session["video_fps"] is None for session in report["per_session"])


def test_webrtc_sessions_report_latency_from_control_metadata(server: ServerProcess) -> None:
    report = bench_json(
        "--url", server.http_url, "--transport", "webrtc", "--model", "invert",
        "--sessions", "2", "--duration", "2", "--size", "256x256", "--quiet",
    )  # fmt: skip
    check_report(report, sessions=2, transport="webrtc")
    assert report["quality"] is None
    assert "metadata" in report["latency_measured"]
    assert all(session["video_fps"] > 0 for session in report["per_session"])


def test_the_table_and_the_progress_line(server: ServerProcess) -> None:
    done = bench(
        "--url", server.http_url, "--model", "invert", "--duration", "1.5", "--size", "128x128",
        "--params", '{"output_quality": 50}',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("| metric | value |\n|---|---|\n")
    for row in ("delivered fps per session", "latency p50 / p95 / p99 ms", "fairness"):
        assert f"| {row}" in done.stdout
    assert "| server CPU ms per output frame | " in done.stdout
    assert "\rbench " in done.stderr  # overwritten in place


def test_serve_starts_a_server_of_its_own_with_serve_options(tmp_path: Path) -> None:
    report = bench_json(
        "--serve", "--model", "invert", "--duration", "1.5", "--size", "128x128", "--quiet",
        "--params", '{"delay_ms": 20}', "--", "--max-batch", "1", "--device", "cpu",
        cache=tmp_path,
    )  # fmt: skip
    check_report(report, sessions=1, transport="websocket")
    assert report["url"].startswith("http://127.0.0.1:")
    assert report["params"] == {"delay_ms": 20}
    assert report["latency"]["p50_ms"] >= 20  # the model's own delay is in every latency


def test_bad_arguments_are_refused() -> None:
    refused = bench("--url", "http://127.0.0.1:9", "--transport", "webrtc", "--fps", "0")
    assert refused.returncode == 2 and "WebSocket only" in refused.stderr
    refused = bench("--url", "http://127.0.0.1:9", "--", "--max-batch", "1")
    assert refused.returncode == 2 and "need --serve" in refused.stderr
    refused = bench("--url", "http://127.0.0.1:9", "--size", "512")
    assert refused.returncode == 2 and "WIDTHxHEIGHT" in refused.stderr
    refused = bench("--url", "http://127.0.0.1:9", "--params", "[1]")
    assert refused.returncode == 2 and "JSON object" in refused.stderr


def test_an_unreachable_server_is_an_error_not_a_report() -> None:
    done = bench("--url", "http://127.0.0.1:9", "--duration", "1", "--quiet")
    assert done.returncode == 1
    assert done.stderr.startswith("realtime bench: ") and "Traceback" not in done.stderr


@pytest.mark.asyncio
async def test_in_process_run_gives_a_latency_timeline(server: ServerProcess) -> None:
    config = BenchConfig(
        server.http_url, sessions=2, fps=15, width=128, height=128, duration_s=2, model="invert"
    )
    run = await run_bench(config)
    assert run.report.sessions == 2 and run.report.outputs > 0
    buckets = latency_timeline(run, 1.0)
    assert [start for start, _, _ in buckets] == [0.0, 1.0]
    assert sum(count for _, _, count in buckets) == run.report.outputs
    for _, summary, count in buckets:
        assert summary is None or summary.samples == count


def test_jain_index() -> None:
    assert jain_index([30.0, 30.0, 30.0]) == pytest.approx(1.0)
    assert jain_index([10.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)  # one of four served: 1/n
    assert jain_index([0.0, 0.0]) is None
    assert jain_index([]) is None


def test_metrics_export_the_process_cpu_and_memory(server: ServerProcess) -> None:
    text = httpx.get(f"{server.http_url}/metrics").text
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples["process_cpu_seconds_total"] > 0
    assert samples["process_resident_memory_bytes"] > 0
