"""The `realtime` command as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from realtime.bench.harness import free_port


def realtime(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "realtime", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
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
    assert (
        "known models: tiny, tiny-avatar, invert, sd-turbo, sdxl-turbo, lcm, lcm-lora"
        in refused.stderr
    )


def test_serve_refuses_a_bad_number() -> None:
    refused = realtime("serve", "--max-sessions", "0")
    assert refused.returncode == 2
    assert "--max-sessions: must be at least 1, got 0" in refused.stderr


def offline(tmp_path: Path) -> dict[str, str]:
    """An empty Hugging Face cache and no network lookups: a machine without the weights."""
    return {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}


def test_serve_without_the_weights_exits_at_once_naming_the_model_and_what_to_do(
    tmp_path: Path,
) -> None:
    refused = realtime("serve", "--model", "sd-turbo", env=offline(tmp_path))
    assert refused.returncode == 1
    message = refused.stderr.strip()
    assert message.startswith("realtime serve: cannot load model sd-turbo (stabilityai/sd-turbo)")
    assert "realtime pull sd-turbo" in message and "HF_HOME" in message
    assert "Traceback" not in refused.stderr


def test_serve_names_a_missing_folder(tmp_path: Path) -> None:
    refused = realtime("serve", "--model", str(tmp_path / "nowhere"), env=offline(tmp_path))
    assert refused.returncode == 1
    assert "no such folder" in refused.stderr and "Traceback" not in refused.stderr


def test_serve_refuses_a_folder_of_an_unsupported_pipeline(tmp_path: Path) -> None:
    folder = tmp_path / "kandinsky"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "KandinskyPipeline"}')
    refused = realtime("serve", "--model", str(folder), env=offline(tmp_path))
    assert refused.returncode == 2
    assert "no model family runs pipeline class 'KandinskyPipeline'" in refused.stderr
    assert "StableDiffusionXLPipeline" in refused.stderr


def test_pull_offline_says_what_it_needs(tmp_path: Path) -> None:
    refused = realtime("pull", "sd-turbo", env=offline(tmp_path))
    assert refused.returncode == 1
    assert "pulling stabilityai/sd-turbo" in refused.stdout
    assert "cannot download stabilityai/sd-turbo" in refused.stderr
    assert "HF_HUB_OFFLINE unset" in refused.stderr


@pytest.mark.parametrize("command", [("pull", "sd-turbo"), ("serve", "--model", "sd-turbo")])
def test_an_unreachable_hub_is_said_once_without_retrying(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    # A Hub that refuses connections (HF_ENDPOINT honored): like a machine with no route
    # out, and on any machine.
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": endpoint}
    env.pop("HF_HUB_OFFLINE", None)
    refused = realtime(*command, env=env)
    assert refused.returncode == 1
    output = refused.stdout + refused.stderr
    assert output.count(f"the Hugging Face Hub ({endpoint}) cannot be reached") == 1, output
    assert "Retrying" not in output
    assert "Traceback" not in output


def test_pull_of_a_model_built_here_downloads_nothing() -> None:
    pulled = realtime("pull", "tiny")
    assert pulled.returncode == 0
    assert "needs no download" in pulled.stdout


def test_models_shows_each_licence_and_the_parts_that_exist() -> None:
    listed = realtime("models")
    assert listed.returncode == 0
    lines = [line.strip() for line in listed.stdout.splitlines()]
    assert "lcm: MIT" in lines
    assert any(
        line.startswith("sd-turbo: Stability AI's non-commercial community licence")
        for line in lines
    )
    assert (
        "--ip-adapter plus-face: h94/IP-Adapter/models/ip-adapter-plus-face_sd15.safetensors"
        " (Apache-2.0)" in lines
    )
    assert "--control face: CrucibleAI/ControlNetMediaPipeFace/diffusion_sd15" in listed.stdout
    assert "no IP-Adapter exists for its UNet" in listed.stdout


def test_serve_and_pull_refuse_a_part_the_model_lacks_before_anything_else(
    tmp_path: Path,
) -> None:
    for command in ("serve", "--model", "sd-turbo"), ("pull", "sd-turbo"):
        refused = realtime(*command, "--ip-adapter", "plain", env=offline(tmp_path))
        assert refused.returncode == 2
        assert "sd-turbo has no IP-Adapter" in refused.stderr
        assert "use sdxl-turbo or the SD 1.5 line" in refused.stderr
        assert "pulling" not in refused.stdout  # nothing downloaded first
    refused = realtime("serve", "--model", "lcm", "--control", "depth", env=offline(tmp_path))
    assert refused.returncode == 2
    assert "lcm has no ControlNet for control 'depth'; it has: face, canny" in refused.stderr


def test_serve_without_a_part_exits_at_once_naming_it_and_what_to_do(tmp_path: Path) -> None:
    base = tmp_path / "sd15"  # the model itself is here: only the part is missing
    base.mkdir()
    (base / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    spec = f"lcm-lora:{base}"
    refused = realtime("serve", "--model", spec, "--ip-adapter", "plus-face", env=offline(tmp_path))
    assert refused.returncode == 1
    message = refused.stderr.strip()
    assert message.startswith(f"realtime serve: cannot load model {spec} --ip-adapter plus-face")
    assert "(h94/IP-Adapter)" in message
    assert "models/ip-adapter-plus-face_sd15.safetensors" in message
    assert f"realtime pull {spec} --ip-adapter plus-face" in message
    assert "Traceback" not in refused.stderr
