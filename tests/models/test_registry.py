"""--model specs to registry entries: names, hub ids and folders, random weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.loading import ModelLoadError
from models.registry import REGISTRY, UnknownModelSpec, resolve_model, weight_sources
from session.session import Session


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with an empty Hugging Face cache that never reaches the Hub."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def test_random_weights_need_nothing_from_the_hub_and_say_so_in_ready() -> None:
    entry = resolve_model("sdxl-turbo", random_weights=True)
    assert entry.info.id == "sdxl-turbo" and entry.info.random_weights
    assert entry.sources == ()
    session = Session("s1", entry.info)
    session.pin()
    assert session.model_ready()["random_weights"] is True


def test_a_family_name_without_its_weights_fails_naming_the_model() -> None:
    with pytest.raises(ModelLoadError) as missing:
        resolve_model("lcm")
    assert missing.value.model == "lcm"
    assert str(missing.value).startswith("cannot load model lcm (SimianLuo/LCM_Dreamshaper_v7): ")
    assert "realtime pull lcm" in str(missing.value)


def test_a_folder_is_detected_from_its_model_index(family_folders) -> None:  # type: ignore[no-untyped-def]
    entry = resolve_model(str(family_folders.sdxl), vae="full")
    assert entry.info.id == str(family_folders.sdxl)
    assert entry.info.text_to_image and (entry.info.width, entry.info.height) == (512, 512)
    assert entry.sources == (str(family_folders.sdxl),)  # no tiny VAE with --vae full


def test_unknown_and_unsupported_specs(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelSpec, match="known models: tiny, tiny-avatar, invert, sd-turbo"):
        resolve_model("no-such-model")
    folder = tmp_path / "audio"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "AudioLDMPipeline"}))
    with pytest.raises(UnknownModelSpec, match="'AudioLDMPipeline'"):
        resolve_model(str(folder))


def test_what_pull_downloads() -> None:
    assert weight_sources("tiny") == ()
    assert weight_sources("sdxl-turbo") == ("stabilityai/sdxl-turbo", "madebyollin/taesdxl")
    assert weight_sources("lcm-lora:me/my-sd15") == (
        "me/my-sd15",
        "latent-consistency/lcm-lora-sdv1-5",
        "madebyollin/taesd",
    )
    assert weight_sources("someone/some-pipeline") == ("someone/some-pipeline",)
    assert set(REGISTRY) == {"tiny", "invert", "sd-turbo", "sdxl-turbo", "lcm", "lcm-lora"}
