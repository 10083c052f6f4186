"""`realtime serve --help` (and `realtime cluster serve --help`) explains every option
and its default; `realtime models` says where each model's weights are."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from realtime.cli import build_parser


def subcommand(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        commands = next(
            action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
        )
        parser = commands.choices[name]
    return parser


@pytest.mark.parametrize("command", [("serve",), ("cluster", "serve")], ids=" ".join)
def test_every_serve_option_has_help_that_shows_its_default(command: tuple[str, ...]) -> None:
    parser = subcommand(build_parser(), *command)
    options = [action for action in parser._actions if action.option_strings]
    assert len(options) > 20
    for action in options:
        if action.dest == "help":
            continue
        assert action.help, f"{action.option_strings[0]} has no help"
        assert "(default: " in action.help, f"{action.option_strings[0]} hides its default"


def test_help_prints_the_defaults() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "realtime", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert "(default: 127.0.0.1)" in text and "(default: 8000)" in text
    assert "%(default)" not in text


def listed_models(hub: Path) -> dict[str, str]:
    """`realtime models` with `hub` as the Hugging Face cache: its lines by model id."""
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    listed = subprocess.run(
        [sys.executable, "-m", "realtime", "models"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert listed.returncode == 0, listed.stderr
    return {line.split()[0]: line for line in listed.stdout.splitlines() if line.strip()}


def test_models_says_which_weights_are_here(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    snapshot = hub / "models--stabilityai--sd-turbo" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    rows = listed_models(hub)
    assert "built in" in rows["tiny"] and "built in" in rows["invert"]
    assert "missing (1 of 2)" in rows["sd-turbo"]  # its own weights, not TAESD
    assert "missing (2 of 2)" in rows["sdxl-turbo"]
    (hub / "models--madebyollin--taesd" / "snapshots" / "def").mkdir(parents=True)
    rows = listed_models(hub)
    assert " here " in rows["sd-turbo"]
