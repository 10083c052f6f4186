"""benchmarks/avatar.py and benchmarks/flicker.py on their CPU path, tiny sizes, so that
they cannot rot before a GPU runs them: the tables' structure, finite positive numbers."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from benchmarks import avatar, flicker


def document(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_avatar_gives_every_mode_for_each_batch_with_positive_times(
    capsys: pytest.CaptureFixture[str],
) -> None:
    avatar.main(
        ["--families", "tiny-avatar", "--batch", "1,2", "--frames", "2", "--warmup", "0", "--json"]
    )
    result = document(capsys)
    rows = result["rows"]
    assert [(row["mode"], row["sessions"]) for row in rows] == [
        (mode, batch) for mode in avatar.MODES for batch in (1, 2)
    ]
    for row in rows:
        assert row["model"] == "tiny-avatar" and len(row["ms_per_call_samples"]) == 2
        assert math.isfinite(row["ms_per_frame"]) and row["ms_per_frame"] > 0, row
    notes = "\n".join(result["notes"])
    assert "encoding a reference (once per reference)" in notes
    assert "annotator 'canny'" in notes and "annotator 'face'" in notes
    printed = avatar.table(rows).splitlines()
    assert printed[0].startswith("| model | size |") and len(printed) == len(rows) + 2


def test_flicker_gives_a_row_per_stability_after_the_input(
    capsys: pytest.CaptureFixture[str],
) -> None:
    flicker.main(["--models", "tiny-avatar", "--stability", "0,0.6", "--frames", "3", "--json"])
    rows = document(capsys)["rows"]
    assert [(row["model"], row["stability"]) for row in rows] == [
        ("input", None),
        ("tiny-avatar", 0.0),
        ("tiny-avatar", 0.6),
    ]
    for row in rows:
        assert row["frames"] == 3
        assert math.isfinite(row["flicker"]) and row["flicker"] >= 0, row
        assert math.isfinite(row["bias"]) and row["bias"] >= 0, row
    assert rows[0]["flicker"] > 0, "the sensor noise changes every frame"
    printed = flicker.table(rows).splitlines()
    assert printed[0].startswith("| model | stability |") and len(printed) == len(rows) + 2
