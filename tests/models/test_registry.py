"""--model specs to registry entries: names, hub ids and folders, random weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.families import FAMILIES
from models.loading import ModelLoadError
from models.registry import (
    REGISTRY,
    UnknownModelSpec,
    avatar_parts,
    part_downloads,
    resolve_model,
    weight_sources,
)
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
    assert set(REGISTRY) == {
        "tiny",
        "tiny-avatar",
        "invert",
        "sd-turbo",
        "sdxl-turbo",
        "lcm",
        "lcm-lora",
    }


def _sd15_folder(tmp_path: Path) -> str:
    """An SD 1.5 pipeline's folder as far as resolving goes: its model_index.json."""
    folder = tmp_path / "sd15"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return str(folder)


def test_each_family_states_its_licence_and_the_parts_that_exist() -> None:
    assert all(family.licence for family in FAMILIES.values())
    assert "sai-nc-community" in FAMILIES["sd-turbo"].licence
    assert "sai-nc-community" in FAMILIES["sdxl-turbo"].licence
    assert FAMILIES["sd-turbo"].ip_adapters == ()  # none exists for SD 2.1
    for name in ("lcm", "lcm-lora", "sdxl-turbo"):
        adapters = {adapter.name: adapter for adapter in FAMILIES[name].ip_adapters}
        assert set(adapters) == {"plain", "plus-face"}
        assert all(adapter.licence == "Apache-2.0" for adapter in adapters.values())
    assert [c.control for c in FAMILIES["lcm"].controlnets] == ["face", "canny"]
    assert [c.control for c in FAMILIES["sdxl-turbo"].controlnets] == ["canny"]


def test_parts_are_chosen_by_name() -> None:
    parts = avatar_parts(FAMILIES["lcm"], ("face", "canny", "face"), "plus-face")
    assert parts.controls == ("face", "canny")
    assert parts.ip_adapter is not None
    assert parts.ip_adapter.weight_name == "ip-adapter-plus-face_sd15.safetensors"
    assert not avatar_parts(FAMILIES["lcm"])


def test_a_part_the_family_lacks_is_refused_naming_what_it_has(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelSpec, match="no ControlNet for control 'depth'; it has: face"):
        resolve_model("lcm", controls=("depth",))
    with pytest.raises(UnknownModelSpec, match="no IP-Adapter 'full'; it has: plain, plus-face"):
        resolve_model("sdxl-turbo", ip_adapter="full")
    with pytest.raises(UnknownModelSpec, match=r"sd-turbo has no IP-Adapter.*use sdxl-turbo"):
        resolve_model("sd-turbo", ip_adapter="plain")
    with pytest.raises(UnknownModelSpec, match="invert takes no --control"):
        resolve_model("invert", controls=("face",))


def test_missing_part_weights_fail_at_resolve_naming_the_piece(tmp_path: Path) -> None:
    spec = f"lcm-lora:{_sd15_folder(tmp_path)}"
    assert resolve_model(spec).info.id == spec  # the model itself is here
    with pytest.raises(ModelLoadError) as missing:
        resolve_model(spec, ip_adapter="plus-face")
    assert missing.value.source == "h94/IP-Adapter"
    assert "models/ip-adapter-plus-face_sd15.safetensors" in str(missing.value)
    assert f"realtime pull {spec} --ip-adapter plus-face" in str(missing.value)
    with pytest.raises(ModelLoadError) as missing:
        resolve_model(spec, controls=("face",))
    assert missing.value.source == "CrucibleAI/ControlNetMediaPipeFace"


def test_what_pull_downloads_for_parts_is_only_their_files() -> None:
    assert part_downloads("lcm") == ()
    assert part_downloads("lcm", ("face",), "plus-face") == (
        (
            "CrucibleAI/ControlNetMediaPipeFace",
            (
                "diffusion_sd15/config.json",
                "diffusion_sd15/diffusion_pytorch_model.fp16.safetensors",
            ),
        ),
        (
            "h94/IP-Adapter",
            (
                "models/ip-adapter-plus-face_sd15.safetensors",
                "models/image_encoder/config.json",
                "models/image_encoder/model.safetensors",
            ),
        ),
    )
    assert part_downloads("sdxl-turbo", ("canny",)) == (
        (
            "diffusers/controlnet-canny-sdxl-1.0",
            ("config.json", "diffusion_pytorch_model.safetensors"),
        ),
    )
    with pytest.raises(UnknownModelSpec, match="sd-turbo has no IP-Adapter"):
        part_downloads("sd-turbo", ip_adapter="plain")
