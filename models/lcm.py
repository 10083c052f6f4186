"""Latent consistency models: LCM (a distilled UNet) and LCM-LoRA (a LoRA on SD 1.5).

- `lcm`: SimianLuo/LCM_Dreamshaper_v7, the LatentConsistencyModel*Pipeline
  family. Its guidance is an input of the distilled UNet (`guidance_scale`),
  and input frames take LCM's own img2img timesteps, at least one step
  whatever the strength (see `models.few_step._set_lcm_timesteps`).
- `lcm-lora`: an SD 1.5 base with latent-consistency/lcm-lora-sdv1-5 fused
  into its UNet and LCMScheduler as its scheduler, as diffusers' LCM-LoRA
  guide runs it: StableDiffusion(Img2Img)Pipeline at guidance_scale 1 (no
  guidance param), so input frames take the img2img pipeline's timesteps and
  need steps x strength >= 1.

Importing this module is cheap: torch and diffusers load with the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.base import ModelInfo
from models.loading import load_errors, local_or_hub
from models.params import ParamSpec
from models.pipelines import (
    PROMPT,
    SEED,
    STRENGTH,
    TAESD,
    load_family_pipeline,
    steps_param,
    steps_times_strength,
)

if TYPE_CHECKING:
    import torch
    from diffusers.pipelines.pipeline_utils import DiffusionPipeline

    from models.few_step import FewStepModel

NAME = "lcm"
HUB_ID = "SimianLuo/LCM_Dreamshaper_v7"
WIDTH = HEIGHT = 512
PIPELINE_CLASSES = ("LatentConsistencyModelPipeline", "LatentConsistencyModelImg2ImgPipeline")

LORA_NAME = "lcm-lora"
LORA_BASE_HUB_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
LORA_HUB_ID = "latent-consistency/lcm-lora-sdv1-5"
LORA_PIPELINE_CLASSES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")

GUIDANCE_SCALE = ParamSpec(
    "guidance_scale",
    float,
    8.0,
    "LCM guidance, embedded in the UNet; 1 is none.",
    minimum=0.0,
    maximum=20.0,
)


def model_info(*, width: int = WIDTH, height: int = HEIGHT) -> ModelInfo:
    """LCM's description and params, at `width` x `height` (multiples of 8)."""
    return ModelInfo(
        id=NAME,
        description="Latent consistency model (Dreamshaper v7): 2-8 steps, guidance in the UNet.",
        kind="img2img",
        width=width,
        height=height,
        params=(
            PROMPT,
            STRENGTH,
            steps_param(maximum=8, default=4, img2img_runs_a_share=False),
            SEED,
            GUIDANCE_SCALE,
        ),
        text_to_image=True,
    )


def lora_model_info(*, width: int = WIDTH, height: int = HEIGHT) -> ModelInfo:
    """LCM-LoRA's description, params and constraint, at `width` x `height` (multiples of 8)."""
    return ModelInfo(
        id=LORA_NAME,
        description="LCM-LoRA on Stable Diffusion 1.5: 2-8 steps, no guidance.",
        kind="img2img",
        width=width,
        height=height,
        params=(
            PROMPT,
            STRENGTH,
            steps_param(maximum=8, default=4, img2img_runs_a_share=True),
            SEED,
        ),
        constraints=(steps_times_strength(LORA_NAME),),
        text_to_image=True,
    )


def from_pipeline(pipeline: DiffusionPipeline, info: ModelInfo | None = None) -> FewStepModel:
    """Wrap a loaded LCM pipeline (a UNet with `time_cond_proj_dim`, LCMScheduler)
    as a model; `info` defaults to `model_info()`."""
    from models.few_step import FewStepModel

    return FewStepModel(pipeline, info or model_info(), timesteps="lcm")


def lora_from_pipeline(pipeline: DiffusionPipeline, info: ModelInfo | None = None) -> FewStepModel:
    """Wrap a loaded SD 1.5 pipeline whose UNet has LCM-LoRA fused in as a model; each
    session's scheduler is LCMScheduler with its scheduler's config. `info` defaults
    to `lora_model_info()`."""
    from diffusers.schedulers.scheduling_lcm import LCMScheduler

    from models.few_step import FewStepModel

    return FewStepModel(
        pipeline,
        info or lora_model_info(),
        timesteps="img2img",
        scheduler=LCMScheduler.from_config(pipeline.scheduler.config),
    )


def load(
    source: str = HUB_ID,
    device: str = "auto",
    *,
    info: ModelInfo | None = None,
    tiny_vae: str | None = TAESD,
    dtype: torch.dtype | None = None,
) -> FewStepModel:
    """Load LCM from `source` (a hub id or a folder) onto `device`.

    `tiny_vae` replaces the full VAE (None keeps the source's own); `dtype`
    None picks fp16 on CUDA, fp32 elsewhere. Raises ModelLoadError when
    weights are missing.
    """
    from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_img2img import (
        LatentConsistencyModelImg2ImgPipeline,
    )

    pipeline = load_family_pipeline(
        LatentConsistencyModelImg2ImgPipeline,
        source,
        device,
        tiny_vae=tiny_vae,
        dtype=dtype,
        safety_checker=None,
        requires_safety_checker=False,
    )
    return from_pipeline(pipeline, info)


def load_lora(
    source: str = LORA_BASE_HUB_ID,
    device: str = "auto",
    *,
    info: ModelInfo | None = None,
    tiny_vae: str | None = TAESD,
    lora: str = LORA_HUB_ID,
    dtype: torch.dtype | None = None,
) -> FewStepModel:
    """Load the SD 1.5 base at `source` with the LCM-LoRA at `lora` (each a hub id or a
    folder) fused into its UNet, onto `device`.

    `tiny_vae` replaces the full VAE (None keeps it); `dtype` None picks fp16
    on CUDA, fp32 elsewhere. Raises ModelLoadError when weights are missing.
    """
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import (
        StableDiffusionImg2ImgPipeline,
    )

    pipeline = load_family_pipeline(
        StableDiffusionImg2ImgPipeline,
        source,
        device,
        tiny_vae=tiny_vae,
        dtype=dtype,
        safety_checker=None,
        requires_safety_checker=False,
    )
    with load_errors(lora):
        pipeline.load_lora_weights(local_or_hub(lora))
    # Fused into the weights, the LoRA costs nothing per step; unloading drops its layers.
    pipeline.fuse_lora()
    pipeline.unload_lora_weights()  # type: ignore[no-untyped-call]
    return lora_from_pipeline(pipeline, info)
