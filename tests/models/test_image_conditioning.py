"""Each family with ControlNets and an IP-Adapter (random, of its UNet's structure),
loaded through its real `load(parts=...)` path: equal to diffusers' own ControlNet
img2img pipelines with `ip_adapter_image`, batched across sessions that differ in
reference, control and scales, the reference encoded once, and `stability`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.pipelines.controlnet.pipeline_controlnet_img2img import (
    StableDiffusionControlNetImg2ImgPipeline,
)
from diffusers.pipelines.controlnet.pipeline_controlnet_sd_xl_img2img import (
    StableDiffusionXLControlNetImg2ImgPipeline,
)
from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_img2img import (
    LatentConsistencyModelImg2ImgPipeline,
)
from diffusers.schedulers.scheduling_lcm import LCMScheduler
from family_builders import HEIGHT, WIDTH, FamilyFolders, build_avatar_parts, scene
from PIL import Image

from frames.frame import ControlImage, Pixels
from models.base import ModelInput
from models.families import LCM, LCM_LORA, SD_TURBO, SDXL_TURBO, Family
from models.few_step import FewStepModel
from models.params import ParamValue
from models.parts import AvatarParts

Params = dict[str, ParamValue]


@dataclass(frozen=True)
class Case:
    family: Family
    base: str
    """The attribute of FamilyFolders holding its pipeline."""
    settings: Params
    ip_adapter: bool = True


CASES = {
    case.family.name: case
    for case in (
        Case(LCM_LORA, "sd", {"strength": 0.5, "steps": 4, "seed": 3}),
        Case(LCM, "lcm", {"strength": 0.6, "steps": 2, "seed": 5, "guidance_scale": 4.0}),
        Case(SDXL_TURBO, "sdxl", {"strength": 0.5, "steps": 2, "seed": 7}),
        # SD 2.1 has no IP-Adapter: ControlNets only.
        Case(SD_TURBO, "sd", {"strength": 1.0, "steps": 2, "seed": 9}, ip_adapter=False),
    )
}


@pytest.fixture(scope="module", params=list(CASES), ids=str)
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


@pytest.fixture(scope="module")
def parts(
    case: Case, family_folders: FamilyFolders, tmp_path_factory: pytest.TempPathFactory
) -> AvatarParts:
    folder = tmp_path_factory.mktemp(f"parts-{case.family.name}")
    built = build_avatar_parts(folder, getattr(family_folders, case.base))
    return built if case.ip_adapter else replace(built, ip_adapter=None)


@pytest.fixture(scope="module")
def model(case: Case, family_folders: FamilyFolders, parts: AvatarParts) -> FewStepModel:
    info = case.family.model_info(width=WIDTH, height=HEIGHT, parts=parts)
    options: dict[str, Any] = {}
    if case.family is LCM_LORA:
        options["lora"] = str(family_folders.lcm_lora)
    source = str(getattr(family_folders, case.base))
    return case.family.load(
        source, "cpu", info=info, tiny_vae=str(family_folders.tiny_vae), parts=parts, **options
    )


@pytest.fixture(scope="module")
def image() -> Pixels:
    return scene()


def reference_image(seed: int) -> Pixels:
    return np.random.default_rng(seed).integers(0, 256, (80, 72, 3), dtype=np.uint8)


def control_image(left: int) -> Pixels:
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    pixels[10:40, left : left + 30] = 255
    return pixels


def params(case: Case, model: FewStepModel, **changes: ParamValue) -> Params:
    values: Params = {**model.info.default_params, "prompt": "a lighthouse", **case.settings}
    return {**values, **changes}


def generate(model: FewStepModel, *inputs: ModelInput) -> list[torch.Tensor]:
    return [(output / 2 + 0.5).clamp(0, 1) for output in model.generate(inputs)]


def diffusers_output(
    case: Case,
    folders: FamilyFolders,
    parts: AvatarParts,
    pixels: Pixels,
    values: Params,
    reference: Pixels | None,
    control: ControlImage | None,
) -> torch.Tensor:
    """diffusers' ControlNet img2img pipeline (LCM's own img2img pipeline without a
    control), with the IP-Adapter loaded its way."""
    options: dict[str, Any] = {"vae": AutoencoderTiny.from_pretrained(folders.tiny_vae)}
    call: dict[str, Any] = {}
    if control is not None:
        [weights] = [c for c in parts.controlnets if c.control == control.control]
        options["controlnet"] = ControlNetModel.from_pretrained(weights.source)
        call["control_image"] = Image.fromarray(control.pixels)
        call["controlnet_conditioning_scale"] = float(values["control_scale"])
    if case.family is LCM:
        pipeline_class: Any = LatentConsistencyModelImg2ImgPipeline
        options |= {"safety_checker": None, "requires_safety_checker": False}
    elif case.family is SDXL_TURBO:
        pipeline_class = StableDiffusionXLControlNetImg2ImgPipeline
        options["add_watermarker"] = False
    else:
        pipeline_class = StableDiffusionControlNetImg2ImgPipeline
        options |= {"safety_checker": None, "requires_safety_checker": False}
    pipeline = pipeline_class.from_pretrained(getattr(folders, case.base), **options)
    pipeline.set_progress_bar_config(disable=True)
    if case.family is LCM_LORA:
        pipeline.load_lora_weights(folders.lcm_lora)
        pipeline.fuse_lora()
        pipeline.scheduler = LCMScheduler.from_config(pipeline.scheduler.config)
    guidance = float(values.get("guidance_scale", 1.0 if case.family is LCM_LORA else 0.0))
    if parts.ip_adapter is not None:
        ip = parts.ip_adapter
        pipeline.load_ip_adapter(
            ip.source,
            subfolder=ip.subfolder,
            weight_name=ip.weight_name,
            image_encoder_folder=ip.image_encoder_folder,
        )
        pipeline.set_ip_adapter_scale(float(values["reference_scale"]))
        call["ip_adapter_image"] = reference
    images = pipeline(
        prompt=values["prompt"],
        image=Image.fromarray(pixels),
        strength=values["strength"],
        num_inference_steps=values["steps"],
        guidance_scale=guidance,
        **call,
        generator=torch.Generator("cpu").manual_seed(int(values["seed"])),
        output_type="pt",
    ).images
    output: torch.Tensor = images
    return output


def test_equals_the_diffusers_controlnet_pipeline_with_its_ip_adapter(
    case: Case,
    model: FewStepModel,
    parts: AvatarParts,
    family_folders: FamilyFolders,
    image: Pixels,
) -> None:
    values = params(case, model, control="canny", control_scale=0.7, reference_scale=0.8)
    reference = reference_image(1) if case.ip_adapter else None
    control: ControlImage | None = ControlImage("canny", control_image(20))
    if case.family is LCM:
        # No diffusers pipeline runs LCM's UNet with a ControlNet (theirs ignore its
        # guidance embedding): LCM's own pipeline checks the IP-Adapter, and the
        # ControlNet path is the one the other families check.
        control = None
    expected = diffusers_output(case, family_folders, parts, image, values, reference, control)
    [output] = generate(model, ModelInput(image, values, {}, reference, control))
    torch.testing.assert_close(output, expected, atol=1e-4, rtol=0)
    [plain] = generate(model, ModelInput(image, values, {}))
    assert (plain - output).abs().max() > 1e-3, "the control and reference change the output"


def test_without_a_reference_or_control_it_is_the_plain_model(
    case: Case, model: FewStepModel, family_folders: FamilyFolders, image: Pixels
) -> None:
    values = params(case, model)
    options: dict[str, Any] = {}
    if case.family is LCM_LORA:
        options["lora"] = str(family_folders.lcm_lora)
    plain = case.family.load(
        str(getattr(family_folders, case.base)),
        "cpu",
        info=case.family.model_info(width=WIDTH, height=HEIGHT),
        tiny_vae=str(family_folders.tiny_vae),
        **options,
    )
    [expected] = generate(plain, ModelInput(image, values, {}))
    [output] = generate(model, ModelInput(image, values, {}))
    torch.testing.assert_close(output, expected, atol=1e-6, rtol=0)


def test_a_batch_of_sessions_with_their_own_references_controls_and_scales(
    case: Case, model: FewStepModel, image: Pixels
) -> None:
    flipped = np.ascontiguousarray(image[::-1])
    first, second = reference_image(1), reference_image(2)
    if not case.ip_adapter:
        first = second = None  # type: ignore[assignment]
    canny, face = ControlImage("canny", control_image(10)), ControlImage("face", control_image(50))
    batch = [
        ModelInput(
            image, params(case, model, control_scale=0.5, reference_scale=0.3), {}, first, canny
        ),
        ModelInput(
            flipped, params(case, model, control_scale=1.2, reference_scale=1.0), {}, second, face
        ),
        ModelInput(image, params(case, model, prompt="a forest"), {}),
        ModelInput(flipped, params(case, model, reference_scale=0.9), {}, first, None),
        ModelInput(image, params(case, model, control_scale=0.9), {}, None, canny),
    ]
    calls: list[int] = []
    hooks = [
        net.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
        for net in (model.unet, *model.controlnets.values())
    ]
    try:
        together = generate(model, *batch)
    finally:
        for hook in hooks:
            hook.remove()
    steps = _steps_run(case)
    # Per step: one UNet call for all five, one canny call for its three, one face call.
    assert sorted(calls) == sorted([5, 2, 1] * steps)
    for item, output in zip(batch, together, strict=True):
        [alone] = generate(
            model, ModelInput(item.pixels, item.params, {}, item.reference, item.control)
        )
        torch.testing.assert_close(output, alone, atol=1e-4, rtol=0)
    assert (together[0] - together[4]).abs().max() > 1e-3, "a reference changes the output"


def _steps_run(case: Case) -> int:
    steps, strength = int(case.settings["steps"]), float(case.settings["strength"])
    return steps if case.family is LCM else int(steps * strength)


def test_a_reference_is_encoded_once_however_many_frames(
    case: Case, model: FewStepModel, image: Pixels
) -> None:
    encoder = model.reference_encoder
    if not case.ip_adapter:
        assert encoder is None and not model.info.takes_reference
        return
    assert encoder is not None and model.info.takes_reference
    state: dict[str, Any] = {}
    values = params(case, model)
    before = encoder.encoded
    first = reference_image(3)
    outputs = [generate(model, ModelInput(image, values, state, first))[0] for _ in range(3)]
    assert encoder.encoded == before + 1
    assert torch.equal(outputs[0], outputs[2]), "the same reference gives the same output"
    [changed] = generate(model, ModelInput(image, values, state, reference_image(4)))
    assert encoder.encoded == before + 2
    assert (changed - outputs[0]).abs().max() > 1e-3, "another reference, another output"


def test_stability_mixes_the_previous_frames_into_the_next(
    case: Case, model: FewStepModel, image: Pixels
) -> None:
    state: dict[str, Any] = {}
    values = params(case, model, stability=0.5)
    [first] = generate(model, ModelInput(image, values, state))
    [plain] = generate(model, ModelInput(image, {**values, "stability": 0.0}, {}))
    assert torch.equal(first, plain), "nothing to carry on the first frame"
    [carried] = generate(model, ModelInput(image[::-1].copy(), values, state))
    [alone] = generate(model, ModelInput(image[::-1].copy(), values, {}))
    # These random pipelines barely follow their input: any difference shows the mixing
    # (test_tiny.py measures what it does to flicker).
    assert not torch.equal(carried, alone), "the first frame is mixed into the second"
