"""Tiny random diffusers pipelines with each family's exact structure, saved as on the hub.

Each builder saves into a folder with `save_pretrained` (model_index.json and
one folder per component), so that tests load it through the families' real
`load(source=folder, tiny_vae=folder)` path. Weights are seeded and small
enough to run a 64 x 96 frame in well under a second on a CPU; the pipelines
hold a full AutoencoderKL, as the hub's do, and the tiny VAE has its own folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_text2img import (
    LatentConsistencyModelPipeline,
)
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
    StableDiffusionXLPipeline,
)
from diffusers.schedulers.scheduling_euler_ancestral_discrete import (
    EulerAncestralDiscreteScheduler,
)
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
from diffusers.schedulers.scheduling_lcm import LCMScheduler
from diffusers.utils.state_dict_utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from frames.frame import Pixels
from models.parts import AvatarParts, ControlNetWeights, IpAdapterWeights
from models.tiny_parts import (
    IP_ADAPTER_FILE,
    byte_text_config,
    byte_tokenizer,
    random_controlnet,
    save_random_ip_adapter,
    small_autoencoder_tiny,
    two_level_unet,
)

# Stable Diffusion's noise schedule, shared by every family here.
_BETAS = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
}
_TEXT_SIZES = {"intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}


@dataclass(frozen=True)
class FamilyFolders:
    """Where `build_family_folders` saved each tiny pipeline."""

    tiny_vae: Path
    sd: Path
    """sd-turbo's structure; also LCM-LoRA's base."""
    sdxl: Path
    lcm: Path
    lcm_lora: Path
    """LoRA weights for `sd`."""


HEIGHT, WIDTH = 64, 96
"""The size the families are tested at: not square, so that a height and width swapped
anywhere shows."""


def scene() -> Pixels:
    """A HEIGHT x WIDTH gradient with a flat shape, like a face in a scene."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    pixels: Pixels = np.stack([x * 2, y * 3, (x + y)], axis=-1).astype(np.uint8)
    pixels[16:48, 24:64] = (200, 40, 40)
    return pixels


def build_family_folders(root: Path) -> FamilyFolders:
    """Build every family's tiny pipeline, and the tiny VAE, in folders under `root`."""
    sd = build_sd(root / "sd")
    return FamilyFolders(
        tiny_vae=build_tiny_vae(root / "tiny-vae"),
        sd=sd,
        sdxl=build_sdxl(root / "sdxl"),
        lcm=build_lcm(root / "lcm"),
        lcm_lora=build_lcm_lora(root / "lcm-lora", base=sd),
    )


def build_avatar_parts(folder: Path, base: Path) -> AvatarParts:
    """A random "canny" and "face" ControlNet and a plain IP-Adapter for the UNet of the
    pipeline in `base`, saved in `folder` as on the hub."""
    unet = UNet2DConditionModel.from_pretrained(base / "unet")
    controlnets = []
    for n, control in enumerate(("canny", "face")):
        with _seeded(n):
            random_controlnet(unet).save_pretrained(folder / control)
        controlnets.append(ControlNetWeights(control, str(folder / control), "test"))
    with _seeded():
        save_random_ip_adapter(folder / "ip-adapter", unet)
    ip_adapter = IpAdapterWeights(
        "plain", str(folder / "ip-adapter"), "", IP_ADAPTER_FILE, "image_encoder", "test"
    )
    return AvatarParts(tuple(controlnets), ip_adapter)


def build_tiny_vae(folder: Path) -> Path:
    """An AutoencoderTiny (as madebyollin/taesd: 4 latent channels, 8x smaller) in `folder`."""
    with _seeded():
        vae = small_autoencoder_tiny(8)
    vae.save_pretrained(folder)
    return folder


def build_sd(folder: Path) -> Path:
    """A StableDiffusionPipeline as stabilityai/sd-turbo: Euler with "trailing" timesteps."""
    return _build_one_encoder(
        StableDiffusionPipeline,
        folder,
        unet={},
        scheduler=partial(EulerDiscreteScheduler, **_BETAS, timestep_spacing="trailing"),
    )


def build_sdxl(folder: Path) -> Path:
    """A StableDiffusionXLPipeline as stabilityai/sdxl-turbo: two text encoders, the second
    with a projection, a "text_time" UNet, Euler ancestral with "trailing" timesteps."""
    tokenizer = byte_tokenizer(folder / "tokenizer")
    tokenizer_2 = byte_tokenizer(folder / "tokenizer_2")
    time_embed_dim, projection_dim = 8, 16
    with _seeded():
        pipeline = StableDiffusionXLPipeline(
            vae=_full_vae(),
            text_encoder=CLIPTextModel(byte_text_config(tokenizer, hidden_size=16, **_TEXT_SIZES)),
            text_encoder_2=CLIPTextModelWithProjection(
                byte_text_config(
                    tokenizer_2, hidden_size=16, projection_dim=projection_dim, **_TEXT_SIZES
                )
            ),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=_unet(
                cross_attention_dim=32,  # both encoders' hidden states side by side
                use_linear_projection=True,
                addition_embed_type="text_time",
                addition_time_embed_dim=time_embed_dim,
                # Six size numbers (original, crop, target), each embedded, and the pooled prompt.
                projection_class_embeddings_input_dim=6 * time_embed_dim + projection_dim,
            ),
            scheduler=EulerAncestralDiscreteScheduler(**_BETAS, timestep_spacing="trailing"),
            add_watermarker=False,
        )
    pipeline.save_pretrained(folder)
    return folder


def build_lcm(folder: Path) -> Path:
    """A LatentConsistencyModelPipeline as SimianLuo/LCM_Dreamshaper_v7: a UNet that takes
    the guidance embedding (`time_cond_proj_dim`), LCMScheduler."""
    return _build_one_encoder(
        LatentConsistencyModelPipeline,
        folder,
        unet={"time_cond_proj_dim": 32},
        scheduler=partial(LCMScheduler, **_BETAS),
    )


def _build_one_encoder(
    pipeline_class: type[StableDiffusionPipeline] | type[LatentConsistencyModelPipeline],
    folder: Path,
    *,
    unet: dict[str, Any],
    scheduler: Callable[[], Any],
) -> Path:
    """A pipeline of SD 1.x/2.x's structure, one text encoder, saved in `folder`; `unet`
    adds to the UNet's structure."""
    tokenizer = byte_tokenizer(folder / "tokenizer")
    with _seeded():
        pipeline = pipeline_class(
            vae=_full_vae(),
            text_encoder=CLIPTextModel(byte_text_config(tokenizer, hidden_size=16, **_TEXT_SIZES)),
            tokenizer=tokenizer,
            unet=_unet(cross_attention_dim=16, **unet),
            scheduler=scheduler(),
            # diffusers annotates these without None, yet documents None as the way to omit them.
            safety_checker=None,  # type: ignore[arg-type]
            feature_extractor=None,  # type: ignore[arg-type]
            requires_safety_checker=False,
        )
    pipeline.save_pretrained(folder)
    return folder


def build_lcm_lora(folder: Path, base: Path) -> Path:
    """LoRA weights for the UNet of the SD pipeline in `base` (`build_sd`), saved in `folder`
    as latent-consistency/lcm-lora-sdv1-5 is: `save_lora_weights`' pytorch_lora_weights."""
    unet = UNet2DConditionModel.from_pretrained(base / "unet")
    with _seeded():
        # Random A and B (peft's default zeroes B): a LoRA that changes the outputs.
        unet.add_adapter(
            LoraConfig(
                r=4,
                lora_alpha=4,
                init_lora_weights=False,
                target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            )
        )
    # diffusers leaves this function unannotated.
    layers = convert_state_dict_to_diffusers(  # type: ignore[no-untyped-call]
        get_peft_model_state_dict(unet)
    )
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers)
    return folder


def _unet(**structure: Any) -> UNet2DConditionModel:
    return two_level_unet(
        sample_size=8,
        block_out_channels=(16, 32),
        attention_head_dim=4,
        norm_num_groups=8,
        **structure,
    )


def _full_vae() -> AutoencoderKL:
    # Four levels, like SD's: latents 8x smaller than the image, as AutoencoderTiny's.
    vae: AutoencoderKL = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
    )
    return vae


@contextmanager
def _seeded(seed: int = 0) -> Iterator[None]:
    # The same weights on every build, without disturbing the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
