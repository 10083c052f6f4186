"""benchmarks/gpu.sh, the GPU benchmark in one call, on its CPU path (--cpu: the tiny
model in fp32, every stage as on a GPU), so that it cannot rot before a GPU runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu import HEADER

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu.sh"
TIMEOUT_S = 360.0  # the script's own CPU budget is 300 s


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def table(stdout: str) -> list[list[str]]:
    """The Markdown table's lines as cells, header first, the |---| line left out."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[:1] + lines[2:]]


def test_cpu_path_prints_one_table_with_a_row_per_configuration(tmp_path: Path) -> None:
    result = run_script("--cpu", "--out", str(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    header, *rows = table(result.stdout)
    assert header == HEADER
    column = {name: index for index, name in enumerate(HEADER)}

    def keys(stage: str) -> set[tuple[str, ...]]:
        picked = ("steps", "batch / sessions", "compile")
        return {tuple(row[column[c]] for c in picked) for row in rows if row[0] == stage}

    assert keys("models-tiny") == {(s, b, "no") for s in ("1", "2") for b in ("1", "2")}, output
    assert keys("compile-tiny") == {("1", "1", "eager")}, output
    assert keys("e2e-1") == {("model's default", "1", "no")}, output
    assert keys("e2e-2") == {("model's default", "2", "no")}, output
    for row in rows:
        assert float(row[column["frames/s"]]) > 0, row
    assert "every stage passed" in result.stdout
    assert (tmp_path / "table.md").read_text().count("\n| ") == len(rows) + 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"models-tiny", "e2e-1", "e2e-2", "compile-tiny"}
    for stage in ("e2e-1", "e2e-2"):  # frames came back (frames/s above), none refused
        assert results[stage]["errors"] == 0, results[stage]
        assert results[stage]["sessions"] == int(stage.removeprefix("e2e-"))
    assert "=== e2e-2 (exit 0) ===" in (tmp_path / "stages.log").read_text()


def test_a_failing_stage_is_named_with_its_error_and_the_script_exits_1() -> None:
    result = run_script("--cpu", "--families", "no-such-model", "--only", "models")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "install: done" in result.stdout  # install runs whatever --only says
    assert "FAILED models-no-such-model: exit 2" in result.stdout
    assert "unknown families ['no-such-model']" in result.stdout  # the tail of its log
    assert "1 stage(s) failed: models-no-such-model" in result.stdout


def test_the_gpu_path_stops_at_once_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the GPU path would run")
    result = run_script("--only", "models")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED cuda" in result.stdout
    assert "sees no CUDA device" in result.stdout
    assert "models-" not in result.stdout  # stopped before the stages that need it
