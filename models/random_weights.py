"""Real architectures with random weights: honest speed measurements without the weights.

`--random-weights` builds a family's pipeline from the configs shipped in
models/configs/ (the folders its `Family.random_configs` names), so every
layer, shape and scheduler is the real model's and only the weights are
random: the outputs are noise, the timings are real. The vae is the family's
tiny autoencoder (TAESD or TAESDXL), as the server runs it; the tokenizer is
a byte-level CLIP tokenizer (`models.tiny_parts`), because the real
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
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

from models.families import FAMILIES
from models.parts import AvatarParts
from models.pipelines import diffusers_class
from models.tiny_parts import byte_tokenizer

if TYPE_CHECKING:
    import torch
    from diffusers.pipelines.pipeline_utils import DiffusionPipeline

RANDOM_FAMILIES: tuple[str, ...] = tuple(FAMILIES)


def build_random_pipeline(family: str, device: str, dtype: torch.dtype) -> DiffusionPipeline:
    """Return `family`'s pipeline with its real architecture and random weights.

    The modules are created on `device` (so that a GPU, not the CPU, runs the
    random initialisation of up to 2.6B parameters) and then cast to `dtype`.
    `device="meta"` builds the structure without memory (for counting parameters).
    """
    try:
        spec = FAMILIES[family]
    except KeyError:
        raise ValueError(
            f"no random-weights family {family!r}; known: {', '.join(RANDOM_FAMILIES)}"
        ) from None

    import torch
    from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = spec.random_configs.pipeline
    scheduler_config = _config(folder, "scheduler", "scheduler_config.json")
    scheduler_class = diffusers_class(spec.scheduler or scheduler_config["_class_name"])
    tokenizer = byte_tokenizer()
    # Created on `device`, in float32, then cast: torch's default dtype is process-wide,
    # and another worker's thread may be running its model meanwhile.
    with torch.device(device):
        components: dict[str, Any] = {
            "unet": UNet2DConditionModel.from_config(_config(folder, "unet", "config.json")),
            "vae": AutoencoderTiny.from_config(_config(spec.random_configs.vae, "config.json")),
        }
        # text_encoder, then text_encoder_2 (SDXL's, with projection) if any.
        for suffix in ("", "_2"):
            if not _has_config(folder, f"text_encoder{suffix}", "config.json"):
                break
            encoder_class = CLIPTextModelWithProjection if suffix else CLIPTextModel
            encoder_config = CLIPTextConfig.from_dict(
                _config(folder, f"text_encoder{suffix}", "config.json")
            )
            assert len(tokenizer) <= encoder_config.vocab_size, "token ids must fit the encoder"
            components[f"text_encoder{suffix}"] = encoder_class(encoder_config)
            components[f"tokenizer{suffix}"] = tokenizer
    for component in components.values():
        if isinstance(component, torch.nn.Module):
            # One dtype for all: transformers also reads a config's own "torch_dtype".
            component.to(dtype)
            component.eval()  # as from_pretrained leaves them: no dropout
    components["scheduler"] = scheduler_class.from_config(scheduler_config)

    # Its options leave out what random weights have no use for (a safety checker would
    # be one more random network judging noise), and so does an image processor.
    pipeline_class = diffusers_class(spec.pipeline_classes[0])
    pipeline: DiffusionPipeline = pipeline_class(
        **components, feature_extractor=None, **spec.pipeline_options
    )
    return pipeline


def add_random_parts(pipeline: Any, parts: AvatarParts) -> dict[str, Any]:
    """Random parts for `pipeline`'s UNet, on its device and in its dtype: its IP-Adapter
    loaded into the pipeline (a small image encoder: it runs once per reference), and
    a ControlNet of the UNet's encoder structure per control, returned by control."""
    import tempfile
    from pathlib import Path

    from models.tiny_parts import IP_ADAPTER_FILE, random_controlnet, save_random_ip_adapter

    unet = pipeline.unet
    # The ControlNets first: from_unet copies the UNet's config, which the IP-Adapter changes.
    controlnets: dict[str, Any] = {}
    for part in parts.controlnets:
        controlnet: Any = random_controlnet(unet)
        controlnets[part.control] = controlnet.to(device=unet.device, dtype=unet.dtype)
    if parts.ip_adapter is not None:
        with tempfile.TemporaryDirectory(prefix="realtime-ip-adapter-") as folder:
            save_random_ip_adapter(Path(folder), unet)
            pipeline.load_ip_adapter(
                folder,
                subfolder="",
                weight_name=IP_ADAPTER_FILE,
                image_encoder_folder="image_encoder",
            )
        pipeline.image_encoder.to(device=unet.device, dtype=unet.dtype)
    return controlnets


def _has_config(*path: str) -> bool:
    return _config_file(*path).is_file()


def _config(*path: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(_config_file(*path).read_text(encoding="utf-8"))
    return config


def _config_file(*path: str) -> Traversable:
    return resources.files("models").joinpath("configs", *path)
