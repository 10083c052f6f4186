"""sd-turbo: Stable Diffusion 2.1 distilled to 1-4 steps without guidance, at 512 x 512.

The model is distilled without classifier-free guidance, so there is no
guidance param (diffusers' guidance_scale 0). Input frames take the
StableDiffusionImg2ImgPipeline's timesteps (the last steps x strength of an
Euler "trailing" schedule); text to image runs the StableDiffusionPipeline's.

Importing this module is cheap: torch and diffusers load with the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.base import ModelInfo
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

NAME = "sd-turbo"
HUB_ID = "stabilityai/sd-turbo"
WIDTH = HEIGHT = 512
PIPELINE_CLASSES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")


def model_info(*, width: int = WIDTH, height: int = HEIGHT) -> ModelInfo:
    """sd-turbo's description, params and constraint, at `width` x `height` (multiples of 8)."""
    return ModelInfo(
        id=NAME,
        description="SD-Turbo: Stable Diffusion 2.1 distilled to 1-4 steps, no guidance.",
        kind="img2img",
        width=width,
        height=height,
        params=(
            PROMPT,
            STRENGTH,
            steps_param(maximum=4, default=2, img2img_runs_a_share=True),
            SEED,
        ),
        constraints=(steps_times_strength(NAME),),
        text_to_image=True,
    )


def from_pipeline(pipeline: DiffusionPipeline, info: ModelInfo | None = None) -> FewStepModel:
    """Wrap a loaded SD pipeline (any class with its components; its scheduler as sd-turbo's:
    Euler, "trailing" spacing) as a model; `info` defaults to `model_info()`."""
    from models.few_step import FewStepModel

    return FewStepModel(pipeline, info or model_info(), timesteps="img2img")


def load(
    source: str = HUB_ID,
    device: str = "auto",
    *,
    info: ModelInfo | None = None,
    tiny_vae: str | None = TAESD,
    dtype: torch.dtype | None = None,
) -> FewStepModel:
    """Load sd-turbo from `source` (a hub id or a folder) onto `device`.

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
    return from_pipeline(pipeline, info)
