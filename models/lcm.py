"""Latent consistency models: LCM (a distilled UNet) and LCM-LoRA (a LoRA on SD 1.5).

- `lcm`: SimianLuo/LCM_Dreamshaper_v7, the LatentConsistencyModel*Pipeline
  family. Its guidance is an input of the distilled UNet (`guidance_scale`),
  and input frames take LCM's own img2img timesteps, at least one step
  whatever the strength (see `models.timesteps.set_lcm_timesteps`).
- `lcm-lora`: an SD 1.5 base with latent-consistency/lcm-lora-sdv1-5 fused
  into its UNet and LCMScheduler as its scheduler, as diffusers' LCM-LoRA
  guide runs it: StableDiffusion(Img2Img)Pipeline at guidance_scale 1 (no
  guidance param), so input frames take the img2img pipeline's timesteps and
  need steps x strength >= 1.
"""

from __future__ import annotations

from models.family import Family, RandomConfigs
from models.params import ParamSpec
from models.pipelines import (
    MIT,
    NO_SAFETY_CHECKER,
    OPENRAIL,
    OPENRAIL_PLUS,
    SD15_CONTROLNETS,
    SD15_IP_ADAPTERS,
    TAESD,
)

GUIDANCE_SCALE = ParamSpec(
    "guidance_scale",
    float,
    8.0,
    "LCM guidance, embedded in the UNet; 1 is none.",
    minimum=0.0,
    maximum=20.0,
)

FAMILY = Family(
    name="lcm",
    description="Latent consistency model (Dreamshaper v7): 2-8 steps, guidance in the UNet.",
    hub_id="SimianLuo/LCM_Dreamshaper_v7",
    pipeline_classes=("LatentConsistencyModelPipeline", "LatentConsistencyModelImg2ImgPipeline"),
    tiny_vae=TAESD,
    max_steps=8,
    default_steps=4,
    timesteps="lcm",
    random_configs=RandomConfigs("lcm-dreamshaper-v7", vae="taesd"),
    parameters=0.98e9,  # SD 1.5's UNet with the guidance embedding, CLIP-L
    extra_params=(GUIDANCE_SCALE,),
    pipeline_options=NO_SAFETY_CHECKER,
    licence=MIT,
    controlnets=SD15_CONTROLNETS,
    ip_adapters=SD15_IP_ADAPTERS,
)

# The LoRA is fused into the weights, so with random weights LCM-LoRA is its SD 1.5
# base driven by LCMScheduler.from_config(base scheduler config), as diffusers'
# LCM-LoRA recipe sets it up. Its base's class is sd-turbo's: it is chosen by
# name, never detected.
LORA_FAMILY = Family(
    name="lcm-lora",
    description="LCM-LoRA on Stable Diffusion 1.5: 2-8 steps, no guidance.",
    hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
    lora="latent-consistency/lcm-lora-sdv1-5",
    scheduler="LCMScheduler",
    pipeline_classes=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
    tiny_vae=TAESD,
    max_steps=8,
    default_steps=4,
    timesteps="img2img",
    random_configs=RandomConfigs("stable-diffusion-v1-5", vae="taesd"),
    parameters=0.98e9,  # SD 1.5's UNet, CLIP-L
    pipeline_options=NO_SAFETY_CHECKER,
    licence=f"{OPENRAIL} (the SD 1.5 base), {OPENRAIL_PLUS} (the LoRA)",
    controlnets=SD15_CONTROLNETS,
    ip_adapters=SD15_IP_ADAPTERS,
)
