"""What the diffusion families share: loading their pipeline, and their params.

Loading is one path for a hub id and a local folder (`models.loading`), with
AutoencoderTiny swapped in for the full VAE, fp16 on CUDA and fp32 elsewhere,
and a LoRA fused into the weights where a family has one (`models.family`).
Importing this module is cheap and torch-free, as the families' modules are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from models.loading import load_errors, load_pipeline, local_or_hub, resolve_device
from models.params import Constraint, ParamConflict, ParamSpec, ParamValue
from models.parts import ControlNetWeights, IpAdapterWeights

if TYPE_CHECKING:
    import torch
    from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

    from models.loading import PipelineT

APACHE = "Apache-2.0"
MIT = "MIT"
OPENRAIL = "CreativeML OpenRAIL-M"
OPENRAIL_PLUS = "CreativeML OpenRAIL++-M"
STABILITY_NC = (
    "Stability AI's non-commercial community licence (hub tag sai-nc-community);"
    " commercial use needs Stability's commercial terms"
)
"""sd-turbo's and sdxl-turbo's terms, as their hub cards tag them: read their LICENSE.md,
which Stability has revised (its 2024 Community License)."""

TAESD = "madebyollin/taesd"
"""The tiny autoencoder of SD 1.x/2.x latents (sd-turbo, LCM, LCM-LoRA)."""
TAESDXL = "madebyollin/taesdxl"
"""The tiny autoencoder of SDXL latents (sdxl-turbo)."""

IP_ADAPTER = "h94/IP-Adapter"
"""IP-Adapter's weights (Apache-2.0), with the CLIP ViT-H image encoder they all take."""
IP_ADAPTER_ENCODER = "models/image_encoder"

SD15_IP_ADAPTERS = (
    IpAdapterWeights(
        "plain", IP_ADAPTER, "models", "ip-adapter_sd15.safetensors", IP_ADAPTER_ENCODER, APACHE
    ),
    IpAdapterWeights(
        "plus-face",
        IP_ADAPTER,
        "models",
        "ip-adapter-plus-face_sd15.safetensors",
        IP_ADAPTER_ENCODER,
        APACHE,
    ),
)
"""The IP-Adapters of SD 1.5's UNet (LCM, LCM-LoRA)."""

SD15_CONTROLNETS = (
    ControlNetWeights(
        "face", "CrucibleAI/ControlNetMediaPipeFace", OPENRAIL, "diffusion_sd15", variant="fp16"
    ),
    ControlNetWeights("canny", "lllyasviel/control_v11p_sd15_canny", OPENRAIL, variant="fp16"),
)
"""The ControlNets of SD 1.5's UNet: MediaPipe face landmarks, canny edges. Both
repositories hold safetensors only in fp16 (the fp32 weights are pickles)."""

NO_SAFETY_CHECKER: Mapping[str, Any] = {"safety_checker": None, "requires_safety_checker": False}
"""The options that build SD's and LCM's pipelines without their safety checker: only
the pipeline's `__call__` would run it."""


def diffusers_class(name: str) -> Any:
    """The diffusers class called `name` (a pipeline or a scheduler), imported when asked."""
    import diffusers

    return getattr(diffusers, name)


def load_family_pipeline(
    pipeline_class: type[PipelineT],
    source: str,
    device: str,
    *,
    tiny_vae: str | None,
    dtype: torch.dtype | None,
    **options: Any,
) -> PipelineT:
    """Load `pipeline_class` from `source` (a hub id or a folder) onto `device`.

    `tiny_vae` (a hub id or a folder) is an AutoencoderTiny loaded in place of
    the source's VAE, which is then neither fetched nor loaded; None keeps the
    source's own. `dtype` None picks float16 on CUDA, float32 elsewhere. What
    cannot be found or fetched raises ModelLoadError naming it; `options` go to
    from_pretrained.
    """
    import torch

    device = resolve_device(device)
    if dtype is None:
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
    if tiny_vae is not None:
        options["vae"] = load_tiny_vae(tiny_vae, dtype)
    return load_pipeline(pipeline_class, source, device=device, dtype=dtype, **options)


def load_tiny_vae(source: str, dtype: torch.dtype) -> AutoencoderTiny:
    """Load the AutoencoderTiny at `source` (a hub id or a folder), on the CPU."""
    from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

    with load_errors(source):
        vae: AutoencoderTiny = AutoencoderTiny.from_pretrained(local_or_hub(source), dtype=dtype)
    return vae


def fuse_lora(pipeline: Any, lora: str) -> None:
    """Fuse the LoRA at `lora` (a hub id or a folder) into `pipeline`'s UNet. Fused into the
    weights, it costs nothing per step; unloading then drops its layers."""
    with load_errors(lora):
        pipeline.load_lora_weights(local_or_hub(lora))
    pipeline.fuse_lora()
    pipeline.unload_lora_weights()


def load_ip_adapter(pipeline: Any, weights: IpAdapterWeights) -> None:
    """Load an IP-Adapter and its image encoder into `pipeline` (its UNet's cross-attention
    gains the image's keys and values), in the pipeline's dtype, on its device."""
    with load_errors(weights.source):
        pipeline.load_ip_adapter(
            local_or_hub(weights.source),
            subfolder=weights.subfolder,
            weight_name=weights.weight_name,
            image_encoder_folder=weights.image_encoder_folder,
        )
    pipeline.image_encoder.to(device=pipeline.unet.device, dtype=pipeline.unet.dtype)


def load_controlnet(weights: ControlNetWeights, pipeline: Any) -> Any:
    """Load a ControlNet for `pipeline`'s UNet, in its dtype, on its device."""
    from diffusers.models.controlnets.controlnet import ControlNetModel

    options = {"subfolder": weights.subfolder, "variant": weights.variant}
    with load_errors(weights.source):
        controlnet = ControlNetModel.from_pretrained(
            local_or_hub(weights.source), torch_dtype=pipeline.unet.dtype, **options
        )
    return controlnet.to(pipeline.unet.device)


# The params the few-step families share.

PROMPT = ParamSpec(
    "prompt",
    str,
    "a watercolor painting of a quiet harbour at sunset",
    "What to paint.",
    max_length=500,
)
STRENGTH = ParamSpec(
    "strength",
    float,
    0.5,
    "How far to move from the input frame: 0 keeps it, 1 ignores it.",
    minimum=0.0,
    maximum=1.0,
)
SEED = ParamSpec(
    "seed",
    int,
    0,
    "Seed of the noise; fixed, a still input gives a still output.",
    minimum=0,
    maximum=2**32 - 1,
)

STABILITY = ParamSpec(
    "stability",
    float,
    0.0,
    "Share of the previous frames kept in each frame's latent (img2img): less flicker"
    " for a still camera, more lag behind motion; 0 is off.",
    minimum=0.0,
    maximum=0.95,
)


def steps_param(*, maximum: int, default: int, img2img_runs_a_share: bool) -> ParamSpec:
    """The number of denoising steps; with `img2img_runs_a_share`, an input frame
    runs int(steps x strength) of them, as diffusers' img2img pipelines do."""
    description = "Denoising steps per frame."
    if img2img_runs_a_share:
        description = (
            "Denoising steps of the schedule; an input frame runs steps x strength of them."
        )
    return ParamSpec("steps", int, default, description, minimum=1, maximum=maximum)


def steps_times_strength(family: str) -> Constraint:
    """A constraint for the "img2img" timestep policy: at least one step must run."""

    def check(params: Mapping[str, ParamValue]) -> None:
        steps, strength = int(params["steps"]), float(params["strength"])
        if int(steps * strength) < 1:  # as the img2img pipelines count their steps
            raise ParamConflict(
                "strength",
                f"strength {strength:g} x steps {steps} = {steps * strength:g} runs no"
                f" denoising step; {family} needs steps x strength >= 1",
            )

    return check
