"""Real architectures with random weights: honest speed measurements without the weights.

`--random-weights` builds a family's pipeline from the configs shipped in
models/configs/, so every layer, shape and scheduler is the real model's and
only the weights are random: the outputs are noise, the timings are real.
The vae is the family's tiny autoencoder (TAESD or TAESDXL), as the server
runs it; the tokenizer is a byte-level CLIP tokenizer, because the real
vocabulary is a download too.

Importing this module is cheap: torch, diffusers and transformers are
imported when a pipeline is built.

Where each config came from. The hub repos themselves were not reachable, so
most files were read through public copies of them; where a copy was made by
re-saving, its metadata (_name_or_path, versions) was dropped or kept as the
copy has it, and the architecture fields are the repo's:

- sd-turbo/unet: stabilityai/sd-turbo at b261bac6fd2cf515557d5d0707481eafa0485ec2
  (main), as diffusers 0.24.0.dev0 loaded it, dumped in GitHub
  oylo-io/StreamDiffusion examples/img2img/trt_only.py at 374dab1e; agrees with
  schmuell/sd-turbo-ort-web unet/config.json (from snapshot 1681ed09).
- sd-turbo/text_encoder: stabilityai/sd-turbo text_encoder/config.json at
  refs/pr/2 (commit a07e586).
- sd-turbo/scheduler: stabilityai/sd-turbo scheduler/scheduler_config.json at
  b335f733db09ff60444334351a3bbf6ab4b64332 (commit a07e586).
- sdxl-turbo/unet: stabilityai/sdxl-turbo snapshot 8fce7b5546bfdbc5aa3562eafa1de9ee129e3b3c
  as re-saved in saleharqam/Image-To-Image unet/config.json, up to
  time_embedding_dim; the last keys (time_embedding_type, timestep_post_act,
  transformer_layers_per_block [1, 2, 10], up_block_types, upcast_attention,
  use_linear_projection) were not visible there and are SDXL base's.
- sdxl-turbo/text_encoder: stabilityai/sdxl-turbo snapshot
  f4b0486b498f84668e828044de1d0c8ba486e05b as re-saved in
  AfhamAhmed1/fabric-design-sdxl-turbo text_encoder/config.json.
- sdxl-turbo/text_encoder_2: Fabrice-TIERCELIN/sdxl-turbo (a re-upload of
  stabilityai/sdxl-turbo) at 6c2bca356d1f87e37c9ecf2a06a187d365dc5f65.
- sdxl-turbo/scheduler: stabilityai/sdxl-turbo scheduler/scheduler_config.json
  at refs/pr/4 (commit 647e47a, "correct scheduler").
- lcm-dreamshaper-v7/unet: SimianLuo/LCM_Dreamshaper_v7 unet/config.json, the
  exact 1734-byte file, copied in GitHub janeyeon/attention_modulation_lcm
  LCM_Dreamshaper_v7/unet/config.json at 813da559.
- lcm-dreamshaper-v7/text_encoder: SimianLuo/LCM_Dreamshaper_v7
  text_encoder/config.json at 9717c9a527e2c6980569f289c2a716bc7e4576cc.
- lcm-dreamshaper-v7/scheduler: SimianLuo/LCM_Dreamshaper_v7
  scheduler/scheduler_config.json at db41ea3a93086e680d465c13efcbfca36ddbdb6a
  (commit 4c51dea).
- stable-diffusion-v1-5/*: runwayml/stable-diffusion-v1-5 (now
  stable-diffusion-v1-5/stable-diffusion-v1-5) through its git mirror GitHub
  HDRJ-One/runwayml-stable-diffusion-v1-5: unet and scheduler at 2e7465d9,
  text_encoder at c612408b.
- taesd: madebyollin/taesd config.json at 614f76814bbe30edbe2e627ace1c2234c81a2c0e.
- taesdxl: madebyollin/taesdxl's config.json was not found. TAESDXL is TAESD's
  architecture trained on SDXL's latents (same 4 latent channels, scaling
  factor 1.0), so this is the TAESD config; a hub discussion on the repo
  quotes the same shift_factor and upsample_fn keys from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from models.tiny_parts import byte_tokenizer

if TYPE_CHECKING:
    import torch
    from diffusers.pipelines.pipeline_utils import DiffusionPipeline


@dataclass(frozen=True, slots=True)
class _Family:
    """Where a family's configs are, as paths under models/configs/."""

    pipeline: str
    unet: str
    text_encoders: tuple[str, ...]
    """text_encoder, then text_encoder_2 (SDXL's, with projection) if any."""
    scheduler: str
    vae: str
    scheduler_class: str | None = None
    """Replaces the scheduler config's own class (LCM-LoRA runs its base with LCM)."""


_FAMILIES = {
    "sd-turbo": _Family(
        pipeline="StableDiffusionPipeline",
        unet="sd-turbo/unet/config.json",
        text_encoders=("sd-turbo/text_encoder/config.json",),
        scheduler="sd-turbo/scheduler/scheduler_config.json",
        vae="taesd/config.json",
    ),
    "sdxl-turbo": _Family(
        pipeline="StableDiffusionXLPipeline",
        unet="sdxl-turbo/unet/config.json",
        text_encoders=(
            "sdxl-turbo/text_encoder/config.json",
            "sdxl-turbo/text_encoder_2/config.json",
        ),
        scheduler="sdxl-turbo/scheduler/scheduler_config.json",
        vae="taesdxl/config.json",
    ),
    "lcm": _Family(
        pipeline="LatentConsistencyModelPipeline",
        unet="lcm-dreamshaper-v7/unet/config.json",
        text_encoders=("lcm-dreamshaper-v7/text_encoder/config.json",),
        scheduler="lcm-dreamshaper-v7/scheduler/scheduler_config.json",
        vae="taesd/config.json",
    ),
    # The LoRA is fused into the weights, so with random weights LCM-LoRA is its
    # SD 1.5 base driven by LCMScheduler.from_config(base scheduler config), the
    # way diffusers' LCM-LoRA recipe sets it up.
    "lcm-lora": _Family(
        pipeline="StableDiffusionPipeline",
        unet="stable-diffusion-v1-5/unet/config.json",
        text_encoders=("stable-diffusion-v1-5/text_encoder/config.json",),
        scheduler="stable-diffusion-v1-5/scheduler/scheduler_config.json",
        vae="taesd/config.json",
        scheduler_class="LCMScheduler",
    ),
}

RANDOM_FAMILIES: tuple[str, ...] = tuple(_FAMILIES)


def build_random_pipeline(family: str, device: str, dtype: torch.dtype) -> DiffusionPipeline:
    """Return `family`'s pipeline with its real architecture and random weights.

    The modules are created on `device` (so that a GPU, not the CPU, runs the
    random initialisation of up to 2.6B parameters) and then cast to `dtype`.
    `device="meta"` builds the structure without memory (for counting parameters).
    """
    try:
        spec = _FAMILIES[family]
    except KeyError:
        raise ValueError(
            f"no random-weights family {family!r}; known: {', '.join(RANDOM_FAMILIES)}"
        ) from None

    import torch
    from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    scheduler_config = _config(spec.scheduler)
    scheduler_class = _scheduler_class(spec.scheduler_class or scheduler_config["_class_name"])
    tokenizer = byte_tokenizer()
    # Created on `device`, in float32, then cast: torch's default dtype is process-wide,
    # and another worker's thread may be running its model meanwhile.
    with torch.device(device):
        components: dict[str, Any] = {
            "unet": UNet2DConditionModel.from_config(_config(spec.unet)),
            "vae": AutoencoderTiny.from_config(_config(spec.vae)),
        }
        for index, path in enumerate(spec.text_encoders):
            suffix = f"_{index + 1}" if index else ""
            encoder_class = CLIPTextModelWithProjection if index else CLIPTextModel
            encoder_config = CLIPTextConfig.from_dict(_config(path))
            assert len(tokenizer) <= encoder_config.vocab_size, "token ids must fit the encoder"
            components[f"text_encoder{suffix}"] = encoder_class(encoder_config)
            components[f"tokenizer{suffix}"] = tokenizer
    for component in components.values():
        if isinstance(component, torch.nn.Module):
            # One dtype for all: transformers also reads a config's own "torch_dtype".
            component.to(dtype)
            component.eval()  # as from_pretrained leaves them: no dropout
    components["scheduler"] = scheduler_class.from_config(scheduler_config)

    pipeline_class, options = _pipeline_class(spec.pipeline)
    pipeline: DiffusionPipeline = pipeline_class(**components, **options)
    return pipeline


def _config(path: str) -> dict[str, Any]:
    file = resources.files("models").joinpath("configs")
    for part in path.split("/"):
        file = file.joinpath(part)
    config: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    return config


def _scheduler_class(name: str) -> Any:
    # From their modules, not `diffusers`: see models/few_step.py.
    from diffusers.schedulers.scheduling_euler_ancestral_discrete import (
        EulerAncestralDiscreteScheduler,
    )
    from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
    from diffusers.schedulers.scheduling_lcm import LCMScheduler

    classes: dict[str, Any] = {
        "EulerDiscreteScheduler": EulerDiscreteScheduler,
        "EulerAncestralDiscreteScheduler": EulerAncestralDiscreteScheduler,
        "LCMScheduler": LCMScheduler,
    }
    return classes[name]


def _pipeline_class(name: str) -> tuple[Any, dict[str, Any]]:
    """The pipeline class and the options that leave out what random weights cannot use."""
    from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_text2img import (
        LatentConsistencyModelPipeline,
    )
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import (
        StableDiffusionPipeline,
    )
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
        StableDiffusionXLPipeline,
    )

    # A safety checker would be one more random network judging noise.
    no_safety_checker = {
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }
    classes: dict[str, tuple[Any, dict[str, Any]]] = {
        "StableDiffusionPipeline": (StableDiffusionPipeline, no_safety_checker),
        "LatentConsistencyModelPipeline": (LatentConsistencyModelPipeline, no_safety_checker),
        # Watermarking needs the invisible-watermark package and changes no timing that matters.
        "StableDiffusionXLPipeline": (StableDiffusionXLPipeline, {"add_watermarker": False}),
    }
    return classes[name]
