"""Random-weights pipelines: the real architectures, checked by their published sizes.

The families are built on the meta device (structure without memory); one,
LCM, is built for real on the CPU and run for one step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_text2img import (
    LatentConsistencyModelPipeline,
)
from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from frames.frame import ControlImage
from models.base import ModelInput
from models.families import FAMILIES
from models.few_step import FewStepModel
from models.random_weights import RANDOM_FAMILIES, build_random_pipeline
from models.registry import resolve_model

M = 1_000_000
SD21_UNET = 865.9 * M
SD15_UNET = 859.5 * M
SDXL_UNET = 2567.5 * M
CLIP_L_TEXT = 123.1 * M
OPENCLIP_H_TEXT = 340.4 * M  # SD 2.x uses 23 of its 24 layers
OPENCLIP_BIGG_TEXT = 694.7 * M  # with its text projection
TAESD = 2.4 * M  # encoder and decoder
LCM_GUIDANCE_PROJECTION = 256 * 320  # time_cond_proj_dim x first block's channels, no bias

PUBLISHED_SIZES = {
    "sd-turbo": {"unet": SD21_UNET, "text_encoder": OPENCLIP_H_TEXT, "vae": TAESD},
    "sdxl-turbo": {
        "unet": SDXL_UNET,
        "text_encoder": CLIP_L_TEXT,
        "text_encoder_2": OPENCLIP_BIGG_TEXT,
        "vae": TAESD,
    },
    "lcm": {"unet": SD15_UNET, "text_encoder": CLIP_L_TEXT, "vae": TAESD},
    "lcm-lora": {"unet": SD15_UNET, "text_encoder": CLIP_L_TEXT, "vae": TAESD},
}

SCHEDULERS = {
    "sd-turbo": ("EulerDiscreteScheduler", "trailing"),
    "sdxl-turbo": ("EulerAncestralDiscreteScheduler", "trailing"),
    "lcm": ("LCMScheduler", "leading"),
    "lcm-lora": ("LCMScheduler", "leading"),
}


@pytest.fixture(scope="module")
def meta_pipelines() -> dict[str, DiffusionPipeline]:
    return {
        family: build_random_pipeline(family, "meta", torch.float16) for family in RANDOM_FAMILIES
    }


def parameter_count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def test_every_family_is_checked() -> None:
    assert set(RANDOM_FAMILIES) == set(PUBLISHED_SIZES) == set(SCHEDULERS)


@pytest.mark.parametrize("family", RANDOM_FAMILIES)
def test_components_have_the_published_sizes(
    family: str, meta_pipelines: dict[str, DiffusionPipeline]
) -> None:
    pipeline = meta_pipelines[family]
    for name, size in PUBLISHED_SIZES[family].items():
        module = getattr(pipeline, name)
        assert parameter_count(module) == pytest.approx(size, rel=0.03), name


@pytest.mark.parametrize("family", RANDOM_FAMILIES)
def test_the_size_a_family_declares_is_its_unet_and_text_encoders(
    family: str, meta_pipelines: dict[str, DiffusionPipeline]
) -> None:
    pipeline = meta_pipelines[family]
    names = ["unet", "text_encoder", "text_encoder_2"]
    modules = [getattr(pipeline, name, None) for name in names]
    size = sum(parameter_count(module) for module in modules if module is not None)
    assert size == pytest.approx(FAMILIES[family].parameters, rel=0.01)


def test_lcm_unet_is_sd15_plus_its_guidance_projection(
    meta_pipelines: dict[str, DiffusionPipeline],
) -> None:
    lcm = parameter_count(meta_pipelines["lcm"].unet)
    sd15 = parameter_count(meta_pipelines["lcm-lora"].unet)
    assert lcm - sd15 == LCM_GUIDANCE_PROJECTION


@pytest.mark.parametrize("family", RANDOM_FAMILIES)
def test_modules_are_made_on_the_device_in_the_dtype(
    family: str, meta_pipelines: dict[str, DiffusionPipeline]
) -> None:
    for name, component in meta_pipelines[family].components.items():
        if isinstance(component, torch.nn.Module):
            parameters = list(component.parameters())
            assert {p.device.type for p in parameters} == {"meta"}, name
            assert {p.dtype for p in parameters} == {torch.float16}, name
    assert torch.get_default_dtype() == torch.float32


def test_every_module_takes_the_asked_dtype_whatever_its_config_says() -> None:
    # SDXL-Turbo's text encoder configs say "torch_dtype": "float16".
    pipeline = build_random_pipeline("sdxl-turbo", "meta", torch.float32)
    for name, component in pipeline.components.items():
        if isinstance(component, torch.nn.Module):
            assert {p.dtype for p in component.parameters()} == {torch.float32}, name


@pytest.mark.parametrize("family", RANDOM_FAMILIES)
def test_schedulers_are_the_families(
    family: str, meta_pipelines: dict[str, DiffusionPipeline]
) -> None:
    scheduler = meta_pipelines[family].scheduler
    assert (type(scheduler).__name__, scheduler.config.timestep_spacing) == SCHEDULERS[family]


@pytest.mark.parametrize("family", RANDOM_FAMILIES)
def test_token_ids_fit_the_text_encoders(
    family: str, meta_pipelines: dict[str, DiffusionPipeline]
) -> None:
    pipeline = meta_pipelines[family]
    pairs = [("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")]
    for tokenizer_name, encoder_name in pairs:
        tokenizer = getattr(pipeline, tokenizer_name, None)
        if tokenizer is None:
            continue
        encoder = getattr(pipeline, encoder_name)
        ids = tokenizer(
            "a watercolor harbour at dusk, ünïcode ✓ and 漢字",
            padding="max_length",
            max_length=tokenizer.model_max_length,
        ).input_ids
        assert len(ids) == encoder.config.max_position_embeddings == 77
        assert min(ids) >= 0 and max(ids) < encoder.config.vocab_size


def test_unknown_family_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="sd-turbo, sdxl-turbo, lcm, lcm-lora"):
        build_random_pipeline("sd-3", "meta", torch.float16)


def test_lcm_builds_for_real_on_the_cpu_and_runs() -> None:
    # ~860M float32 parameters: about 15 s and 4.4 GB here, once.
    pipeline = build_random_pipeline("lcm", "cpu", torch.float32)
    assert isinstance(pipeline, LatentConsistencyModelPipeline)
    # diffusers leaves set_progress_bar_config unannotated.
    pipeline.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
    with torch.inference_mode():
        images = pipeline(
            "a harbour", num_inference_steps=1, height=128, width=128, output_type="np"
        ).images
    assert images.shape == (1, 128, 128, 3)
    assert np.isfinite(images).all()


def test_random_parts_of_the_real_architecture_condition_a_frame() -> None:
    """`--random-weights --control canny --ip-adapter plain`: a ControlNet of SD 1.5's
    encoder and an IP-Adapter for its UNet, run through the engine once."""
    entry = resolve_model("lcm-lora", random_weights=True, controls=("canny",), ip_adapter="plain")
    assert entry.info.takes_reference
    assert {"control", "control_scale", "reference_scale"} <= {p.name for p in entry.info.params}
    model = entry.load("cpu")
    assert isinstance(model, FewStepModel)
    assert set(model.controlnets) == {"canny"} and model.reference_encoder is not None
    pixels = np.full((128, 128, 3), 128, np.uint8)
    params = {**entry.info.default_params, "steps": 1, "strength": 1.0, "control": "canny"}
    control = ControlImage("canny", np.zeros((128, 128, 3), np.uint8))
    [output] = model.run([ModelInput(pixels, params, {}, pixels, control)])
    assert output.shape == (128, 128, 3)
