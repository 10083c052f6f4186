"""The `realtime` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys


def realtime(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "realtime", *args], capture_output=True, text=True, timeout=120
    )


def test_models_lists_the_registry() -> None:
    listed = realtime("models")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert any(
        line.startswith("tiny") and "img2img" in line and "256x256" in line for line in lines
    )
    assert any(line.startswith("invert") and "effect" in line for line in lines)


def test_serve_refuses_an_unknown_model_before_starting() -> None:
    refused = realtime("serve", "--model", "no-such-model")
    assert refused.returncode == 2
    assert "unknown model 'no-such-model'" in refused.stderr
    assert "known models: tiny, invert" in refused.stderr


def test_serve_refuses_a_bad_number() -> None:
    refused = realtime("serve", "--max-sessions", "0")
    assert refused.returncode == 2
    assert "--max-sessions: must be at least 1, got 0" in refused.stderr
