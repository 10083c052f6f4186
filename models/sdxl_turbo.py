"""sdxl-turbo: SDXL distilled to 1-4 steps without guidance, served at 512 x 512.

As sd-turbo, on SDXL: two text encoders (penultimate hidden states side by
side, the second's pooled projection) and the size conditioning. Input frames
take the StableDiffusionXLImg2ImgPipeline's timesteps; text to image runs the
StableDiffusionXLPipeline's. Its full VAE (`--vae full`) runs in fp32: SDXL's
VAE overflows in fp16.
"""

from __future__ import annotations

from typing import Any

from models.family import Family, RandomConfigs
from models.parts import ControlNetWeights, IpAdapterWeights
from models.pipelines import (
    APACHE,
    IP_ADAPTER,
    IP_ADAPTER_ENCODER,
    OPENRAIL_PLUS,
    STABILITY_NC,
    TAESDXL,
)


def _vae_in_fp32(pipeline: Any) -> None:
    """Where SDXL's pipelines upcast the VAE for each call, keep it in fp32."""
    import torch

    if pipeline.vae.dtype == torch.float16 and pipeline.vae.config.get("force_upcast"):
        pipeline.vae.to(torch.float32)


FAMILY = Family(
    name="sdxl-turbo",
    description="SDXL-Turbo: SDXL distilled to 1-4 steps, no guidance.",
    hub_id="stabilityai/sdxl-turbo",
    pipeline_classes=("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
    tiny_vae=TAESDXL,
    max_steps=4,
    default_steps=2,
    timesteps="img2img",
    random_configs=RandomConfigs("sdxl-turbo", vae="taesdxl"),
    parameters=3.39e9,  # a 2.6B-parameter UNet, CLIP-L and OpenCLIP-bigG
    # Only the pipeline's __call__ would use the watermarker.
    pipeline_options={"add_watermarker": False},
    prepare=_vae_in_fp32,
    licence=STABILITY_NC,
    # The vit-h weights take SD 1.5's ViT-H image encoder (models/), not sdxl_models' bigG.
    ip_adapters=tuple(
        IpAdapterWeights(name, IP_ADAPTER, "sdxl_models", weights, IP_ADAPTER_ENCODER, APACHE)
        for name, weights in (
            ("plain", "ip-adapter_sdxl_vit-h.safetensors"),
            ("plus-face", "ip-adapter-plus-face_sdxl_vit-h.safetensors"),
        )
    ),
    controlnets=(ControlNetWeights("canny", "diffusers/controlnet-canny-sdxl-1.0", OPENRAIL_PLUS),),
)
