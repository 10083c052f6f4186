"""sd-turbo: Stable Diffusion 2.1 distilled to 1-4 steps without guidance, at 512 x 512.

The model is distilled without classifier-free guidance, so there is no
guidance param (diffusers' guidance_scale 0). Input frames take the
StableDiffusionImg2ImgPipeline's timesteps (the last steps x strength of an
Euler "trailing" schedule); text to image runs the StableDiffusionPipeline's.
"""

from __future__ import annotations

from models.family import Family, RandomConfigs
from models.pipelines import NO_SAFETY_CHECKER, STABILITY_NC, TAESD

FAMILY = Family(
    name="sd-turbo",
    description="SD-Turbo: Stable Diffusion 2.1 distilled to 1-4 steps, no guidance.",
    hub_id="stabilityai/sd-turbo",
    pipeline_classes=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
    tiny_vae=TAESD,
    max_steps=4,
    default_steps=2,
    timesteps="img2img",
    random_configs=RandomConfigs("sd-turbo", vae="taesd"),
    parameters=1.21e9,  # OpenCLIP-H's text encoder, 23 of its 24 layers
    pipeline_options=NO_SAFETY_CHECKER,
    licence=STABILITY_NC,
    # SD 2.1 has no IP-Adapter: avatars take sdxl-turbo or the SD 1.5 line. Its
    # ControlNets (thibaud/controlnet-sd21-canny-diffusers: licence "other") are not
    # declared until their files and terms are checked.
)
