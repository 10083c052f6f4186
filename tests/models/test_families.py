"""Each diffusion family on tiny random weights of its exact structure, loaded through its
real `load` path: sizes, seeds, prompts, equality with the diffusers pipelines (img2img
and text to image, tiny and full VAE), batching across sessions, params and detection."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_img2img import (
    LatentConsistencyModelImg2ImgPipeline,
)
from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_text2img import (
    LatentConsistencyModelPipeline,
)
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import (
    StableDiffusionImg2ImgPipeline,
)
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
    StableDiffusionXLPipeline,
)
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_img2img import (
    StableDiffusionXLImg2ImgPipeline,
)
from diffusers.schedulers.scheduling_lcm import LCMScheduler
from family_builders import HEIGHT, WIDTH, FamilyFolders, scene
from PIL import Image

from frames.frame import Pixels
from models.base import ModelInput
from models.families import FAMILIES, LCM, LCM_LORA, SD_TURBO, SDXL_TURBO, Family, detect_family
from models.few_step import FewStepModel
from models.loading import ModelLoadError
from models.params import ParamConflict, ParamValue

Params = dict[str, ParamValue]


@dataclass(frozen=True)
class Case:
    """One family under test: its folders, its diffusers pipelines and some valid params."""

    family: Family
    source: Callable[[FamilyFolders], Path]
    img2img: type[DiffusionPipeline]
    txt2img: type[DiffusionPipeline]
    settings: tuple[Params, ...]
    """(strength, steps, seed, ...) sets to compare with diffusers; the first is the default."""
    two_steps_elsewhere: Params
    """An img2img setting that runs two steps at other timesteps than steps 2, strength 1."""

    def params(self, **changes: ParamValue) -> Params:
        info = self.family.model_info()
        return {**info.default_params, "prompt": "a lighthouse in a storm", **changes}

    def guidance_scale(self, params: Params) -> float:
        """The pipelines' guidance_scale for `params`: LCM's param, or no guidance."""
        if self.family is LCM:
            return float(params["guidance_scale"])
        return 1.0 if self.family is LCM_LORA else 0.0


TURBO_SETTINGS: tuple[Params, ...] = (
    {"strength": 0.5, "steps": 2, "seed": 0},
    {"strength": 1.0, "steps": 4, "seed": 7},
    {"strength": 0.75, "steps": 4, "seed": 2**32 - 1},
)
"""sd-turbo's and sdxl-turbo's settings: the same params on either."""
FOUR_STEPS_AT_HALF: Params = {"steps": 4, "strength": 0.5}
"""Two steps, the last two of four: other timesteps than two steps at strength 1."""

CASES = {
    case.family.name: case
    for case in (
        Case(
            SD_TURBO,
            lambda folders: folders.sd,
            StableDiffusionImg2ImgPipeline,
            StableDiffusionPipeline,
            TURBO_SETTINGS,
            FOUR_STEPS_AT_HALF,
        ),
        Case(
            SDXL_TURBO,
            lambda folders: folders.sdxl,
            StableDiffusionXLImg2ImgPipeline,
            StableDiffusionXLPipeline,
            TURBO_SETTINGS,
            FOUR_STEPS_AT_HALF,
        ),
        Case(
            LCM,
            lambda folders: folders.lcm,
            LatentConsistencyModelImg2ImgPipeline,
            LatentConsistencyModelPipeline,
            (
                {"strength": 0.5, "steps": 2, "seed": 0, "guidance_scale": 1.0},
                {"strength": 0.8, "steps": 4, "seed": 7, "guidance_scale": 3.5},
                {"strength": 1.0, "steps": 1, "seed": 2**32 - 1, "guidance_scale": 8.0},
            ),
            {"steps": 2, "strength": 0.6, "guidance_scale": 6.0},
        ),
        Case(
            LCM_LORA,
            lambda folders: folders.sd,
            StableDiffusionImg2ImgPipeline,
            StableDiffusionPipeline,
            (
                {"strength": 0.5, "steps": 4, "seed": 0},
                {"strength": 1.0, "steps": 2, "seed": 7},
                {"strength": 0.3, "steps": 8, "seed": 2**32 - 1},
            ),
            FOUR_STEPS_AT_HALF,
        ),
    )
}


def load_model(case: Case, folders: FamilyFolders, *, tiny_vae: bool = True) -> FewStepModel:
    """Through the family's own load, as the server loads a hub id."""
    info = case.family.model_info(width=WIDTH, height=HEIGHT)
    vae = str(folders.tiny_vae) if tiny_vae else None
    source = str(case.source(folders))
    if case.family is LCM_LORA:
        return LCM_LORA.load(source, "cpu", info=info, tiny_vae=vae, lora=str(folders.lcm_lora))
    model: FewStepModel = case.family.load(source, "cpu", info=info, tiny_vae=vae)
    return model


@dataclass(frozen=True)
class Reference:
    """The diffusers pipelines the fast path must match, loaded on their own."""

    img2img: Any
    txt2img: Any


def load_reference(case: Case, folders: FamilyFolders, *, tiny_vae: bool = True) -> Reference:
    options: dict[str, Any] = {}
    if tiny_vae:
        options["vae"] = AutoencoderTiny.from_pretrained(folders.tiny_vae)
    if case.family is SDXL_TURBO:
        options["add_watermarker"] = False
    else:
        options |= {"safety_checker": None, "requires_safety_checker": False}
    img2img = case.img2img.from_pretrained(case.source(folders), **options)
    if case.family is LCM_LORA:
        # As diffusers' LCM-LoRA guide: load, fuse, swap the scheduler.
        img2img.load_lora_weights(folders.lcm_lora)
        img2img.fuse_lora()
        img2img.scheduler = LCMScheduler.from_config(img2img.scheduler.config)
    # diffusers leaves from_pipe unannotated.
    txt2img = case.txt2img.from_pipe(img2img, vae=img2img.vae)  # type: ignore[no-untyped-call]
    for pipeline in (img2img, txt2img):
        pipeline.set_progress_bar_config(disable=True)
    return Reference(img2img, txt2img)


def reference_output(
    case: Case, reference: Reference, pixels: Pixels | None, params: Params
) -> torch.Tensor:
    """The pipeline's output in [0, 1], 1 x 3 x H x W."""
    options: dict[str, Any] = {
        "prompt": params["prompt"],
        "num_inference_steps": params["steps"],
        "guidance_scale": case.guidance_scale(params),
        "generator": torch.Generator("cpu").manual_seed(int(params["seed"])),
        "output_type": "pt",
    }
    if pixels is None:
        images = reference.txt2img(height=HEIGHT, width=WIDTH, **options).images
    else:
        images = reference.img2img(
            image=Image.fromarray(pixels), strength=params["strength"], **options
        ).images
    output: torch.Tensor = images
    return output


def generate(
    model: FewStepModel, pixels: Pixels | None, params: Params, state: dict[str, Any] | None = None
) -> torch.Tensor:
    """The fast path's decoded output, as the pipelines postprocess it: [0, 1]."""
    [decoded] = model.generate([ModelInput(pixels, params, {} if state is None else state)])
    return (decoded / 2 + 0.5).clamp(0, 1)


@pytest.fixture(scope="module", params=list(CASES), ids=str)
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


@pytest.fixture(scope="module")
def model(case: Case, family_folders: FamilyFolders) -> FewStepModel:
    return load_model(case, family_folders)


@pytest.fixture(scope="module")
def reference(case: Case, family_folders: FamilyFolders) -> Reference:
    return load_reference(case, family_folders)


@pytest.fixture(scope="module")
def image() -> Pixels:
    return scene()


def test_frames_and_prompts_alone_make_images_of_the_info_size(
    case: Case, model: FewStepModel, image: Pixels
) -> None:
    assert (model.info.width, model.info.height, model.info.text_to_image) == (WIDTH, HEIGHT, True)
    for pixels in (image, None):
        [output] = model.run([ModelInput(pixels, case.params())])
        assert output.shape == (HEIGHT, WIDTH, 3)
        assert output.dtype == np.uint8
        assert output.std() > 1, "a pattern, not a flat colour"


@pytest.mark.parametrize("text_to_image", [False, True], ids=["img2img", "txt2img"])
def test_a_fixed_seed_gives_the_same_output(
    case: Case, model: FewStepModel, image: Pixels, text_to_image: bool
) -> None:
    pixels = None if text_to_image else image
    params = case.params(**case.settings[1])
    state: dict[str, Any] = {}
    first = generate(model, pixels, params, state)
    assert torch.equal(generate(model, pixels, params, state), first), "from the session's state"
    assert torch.equal(generate(model, pixels, params), first), "from a new session"
    other_seed = generate(model, pixels, {**params, "seed": 1}, state)
    assert (other_seed - first).abs().max() > 1e-2


@pytest.mark.parametrize("text_to_image", [False, True], ids=["img2img", "txt2img"])
def test_the_prompt_steers_the_output(
    case: Case, model: FewStepModel, image: Pixels, text_to_image: bool
) -> None:
    pixels = None if text_to_image else image
    state: dict[str, Any] = {}
    lighthouse = generate(model, pixels, case.params(), state)
    forest = generate(model, pixels, case.params(prompt="a dark forest"), state)
    assert (lighthouse - forest).abs().max() > 1e-3


@pytest.mark.parametrize("setting", [0, 1, 2])
@pytest.mark.parametrize("text_to_image", [False, True], ids=["img2img", "txt2img"])
def test_the_fast_path_matches_the_diffusers_pipeline(
    case: Case,
    model: FewStepModel,
    reference: Reference,
    image: Pixels,
    setting: int,
    text_to_image: bool,
) -> None:
    pixels = None if text_to_image else image
    params = case.params(**case.settings[setting])
    expected = reference_output(case, reference, pixels, params)
    torch.testing.assert_close(generate(model, pixels, params), expected, atol=1e-4, rtol=0)
    [output] = model.run([ModelInput(pixels, params)])
    levels = np.round(expected[0].permute(1, 2, 0).numpy() * 255)
    assert np.abs(output.astype(int) - levels).max() <= 1


def test_with_the_full_vae_it_samples_the_latents_as_the_pipeline(
    case: Case, family_folders: FamilyFolders, image: Pixels
) -> None:
    # The pipelines draw the VAE's latent sample from the generator before the noise.
    model = load_model(case, family_folders, tiny_vae=False)
    reference = load_reference(case, family_folders, tiny_vae=False)
    assert not isinstance(model.vae, AutoencoderTiny)
    for pixels in (image, None):
        params = case.params(**case.settings[1])
        expected = reference_output(case, reference, pixels, params)
        torch.testing.assert_close(generate(model, pixels, params), expected, atol=1e-4, rtol=0)


def test_a_batch_of_sessions_equals_each_session_alone(
    case: Case, model: FewStepModel, image: Pixels
) -> None:
    flipped = np.ascontiguousarray(image[::-1])
    two_steps = {"steps": 2, "strength": 1.0}
    batch = [
        # Two steps each, at different timesteps: one UNet call per step for both.
        ModelInput(image, case.params(**two_steps, seed=1)),
        ModelInput(flipped, case.params(**case.two_steps_elsewhere, seed=2, prompt="a forest")),
        # Text to image, two steps: another group.
        ModelInput(None, case.params(steps=2, seed=3, prompt="a red boat")),
        # One step: a group of its own.
        ModelInput(image, case.params(steps=1, strength=1.0, seed=4)),
        ModelInput(None, case.params(steps=2, seed=5)),
    ]
    batch_sizes: list[int] = []
    hook = model.unet.register_forward_pre_hook(
        lambda module, args: batch_sizes.append(args[0].shape[0])
    )
    try:
        together = model.generate(batch)
    finally:
        hook.remove()
    assert sorted(batch_sizes) == [1, 2, 2, 2, 2]
    for item, output in zip(batch, together, strict=True):
        [alone] = model.generate([ModelInput(item.pixels, item.params)])
        # Batched convolutions round differently: ~1e-6 here.
        torch.testing.assert_close(output, alone, atol=1e-4, rtol=0)


def test_defaults_and_the_least_strength_for_the_steps_pass_the_constraints(case: Case) -> None:
    info = case.family.model_info()
    for params in (info.default_params, {**info.default_params, "steps": 4, "strength": 0.25}):
        for constraint in info.constraints:
            constraint(params)


@pytest.mark.parametrize("family", [SD_TURBO, SDXL_TURBO, LCM_LORA], ids=lambda f: f.name)
def test_steps_times_strength_below_one_names_strength(family: Family) -> None:
    info = family.model_info()
    [constraint] = info.constraints
    with pytest.raises(ParamConflict) as raised:
        constraint({**info.default_params, "steps": 2, "strength": 0.3})
    assert raised.value.field == "strength"
    assert str(raised.value) == (
        f"strength 0.3 x steps 2 = 0.6 runs no denoising step; {family.name} needs"
        " steps x strength >= 1"
    )


def test_lcm_has_no_constraint_and_runs_at_any_strength(
    family_folders: FamilyFolders, image: Pixels
) -> None:
    assert LCM.model_info().constraints == ()
    model = load_model(CASES["lcm"], family_folders)
    [output] = model.run([ModelInput(image, CASES["lcm"].params(strength=0.0, steps=8))])
    assert output.shape == image.shape


def test_the_img2img_policy_refuses_a_frame_without_steps(
    family_folders: FamilyFolders, image: Pixels
) -> None:
    # Sessions never get here: the constraint refuses these params first.
    model = load_model(CASES["sd-turbo"], family_folders)
    with pytest.raises(ValueError, match="runs no denoising step"):
        model.run([ModelInput(image, CASES["sd-turbo"].params(steps=2, strength=0.3))])


@pytest.mark.parametrize("family", list(FAMILIES.values()), ids=lambda f: f.name)
def test_infos_at_the_native_size(family: Family) -> None:
    info = family.model_info()
    assert (info.id, info.width, info.height) == (family.name, family.width, family.height)
    assert (info.kind, info.text_to_image, info.random_weights) == ("img2img", True, False)
    names = ["prompt", "strength", "steps", "seed"]
    assert [spec.name for spec in info.params] == (
        [*names, "guidance_scale", "stability"] if family is LCM else [*names, "stability"]
    )


@pytest.mark.parametrize(
    ("folder", "family"),
    [("sd", SD_TURBO), ("sdxl", SDXL_TURBO), ("lcm", LCM)],
)
def test_detect_family_reads_the_pipeline_class(
    family_folders: FamilyFolders, folder: str, family: Family
) -> None:
    index = json.loads((getattr(family_folders, folder) / "model_index.json").read_text())
    assert detect_family(index) is family


def test_detect_family_takes_the_tiny_model_for_lcm(tiny_folder: Path) -> None:
    index = json.loads((tiny_folder / "model_index.json").read_text())
    assert detect_family(index) is LCM


def test_detect_family_names_an_unsupported_class_and_the_supported_ones() -> None:
    with pytest.raises(ValueError) as raised:
        detect_family({"_class_name": "FluxPipeline"})
    message = str(raised.value)
    assert "'FluxPipeline'" in message
    for name in (*SD_TURBO.pipeline_classes, *SDXL_TURBO.pipeline_classes, *LCM.pipeline_classes):
        assert name in message


def test_a_missing_tiny_vae_or_lora_raises_model_load_error(
    family_folders: FamilyFolders, tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="no such folder") as raised:
        SD_TURBO.load(str(family_folders.sd), "cpu", tiny_vae=missing)
    assert raised.value.source == missing
    with pytest.raises(ModelLoadError, match="no such folder") as raised:
        LCM_LORA.load(
            str(family_folders.sd), "cpu", tiny_vae=str(family_folders.tiny_vae), lora=missing
        )
    assert raised.value.source == missing
