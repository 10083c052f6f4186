"""sdxl-turbo: SDXL distilled to 1-4 steps without guidance, served at 512 x 512.

As sd-turbo, on SDXL: two text encoders (penultimate hidden states side by
side, the second's pooled projection) and the size conditioning. Input frames
take the StableDiffusionXLImg2ImgPipeline's timesteps; text to image runs the
StableDiffusionXLPipeline's.

Importing this module is cheap: torch and diffusers load with the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.base import ModelInfo
from models.pipelines import (
    PROMPT,
    SEED,
    STRENGTH,
    TAESDXL,
    load_family_pipeline,
    steps_param,
    steps_times_strength,
)

if TYPE_CHECKING:
    import torch
    from diffusers.pipelines.pipeline_utils import DiffusionPipeline

    from models.few_step import FewStepModel

NAME = "sdxl-turbo"
HUB_ID = "stabilityai/sdxl-turbo"
WIDTH = HEIGHT = 512
PIPELINE_CLASSES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline")


def model_info(*, width: int = WIDTH, height: int = HEIGHT) -> ModelInfo:
    """sdxl-turbo's description, params and constraint, at `width` x `height` (multiples of 8)."""
    return ModelInfo(
        id=NAME,
        description="SDXL-Turbo: SDXL distilled to 1-4 steps, no guidance.",
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
    """Wrap a loaded SDXL pipeline (any class with its components, both text encoders)
    as a model; `info` defaults to `model_info()`."""
    from models.few_step import FewStepModel

    return FewStepModel(pipeline, info or model_info(), timesteps="img2img")


def load(
    source: str = HUB_ID,
    device: str = "auto",
    *,
    info: ModelInfo | None = None,
    tiny_vae: str | None = TAESDXL,
    dtype: torch.dtype | None = None,
) -> FewStepModel:
    """Load sdxl-turbo from `source` (a hub id or a folder) onto `device`.

    `tiny_vae` replaces the full VAE (None keeps it, in fp32: SDXL's VAE
    overflows in fp16); `dtype` None picks fp16 on CUDA, fp32 elsewhere.
    Raises ModelLoadError when weights are missing.
    """
    import torch
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_img2img import (
        StableDiffusionXLImg2ImgPipeline,
    )

    pipeline = load_family_pipeline(
        StableDiffusionXLImg2ImgPipeline,
        source,
        device,
        tiny_vae=tiny_vae,
        dtype=dtype,
        add_watermarker=False,  # only the pipeline's __call__ would use it
    )
    if pipeline.vae.dtype == torch.float16 and pipeline.vae.config.get("force_upcast"):
        # Where SDXL's pipelines upcast the VAE for each call, keep it in fp32.
        pipeline.vae.to(torch.float32)
    return from_pipeline(pipeline, info)
