"""The `tiny` model: real LCM img2img on tiny random weights, built offline on first use.

An instance of the LCM family (`models.lcm`) on the shared per-frame engine.
It exercises the whole diffusers path (from_pretrained, UNet, AutoencoderTiny,
CLIP, LCMScheduler) at 256 x 256, fast enough on a laptop CPU to stream, so
the server, its tests and its demo run on machines that cannot download
weights. Its images are abstract: the input's shapes and colours, coarsened
and textured by random filters that the prompt, strength and seed steer.

Importing this module is cheap: torch, diffusers and transformers are
imported when the model is built or loaded.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from frames.cache import build_atomically, cache_folder
from models.base import ModelInfo
from models.params import ParamSpec
from models.parts import AvatarParts, ControlNetWeights, IpAdapterWeights
from models.pipelines import STABILITY
from models.tiny_parts import (
    IP_ADAPTER_FILE,
    byte_text_config,
    byte_tokenizer,
    random_controlnet,
    save_random_ip_adapter,
    small_autoencoder_tiny,
    two_level_unet,
)

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    from models.few_step import FewStepModel

TINY = ModelInfo(
    id="tiny",
    description=(
        "Latent-consistency img2img on tiny random weights, built offline: abstract"
        " images, real diffusers code path, interactive on a CPU."
    ),
    kind="img2img",
    width=256,
    height=256,
    params=(
        ParamSpec(
            "prompt",
            str,
            "a watercolor painting of a quiet harbour at sunset",
            "What to paint; with random weights it steers colours and texture.",
            max_length=500,
        ),
        ParamSpec(
            "strength",
            float,
            0.5,
            "How far to move from the input: 0 keeps it, 1 ignores it.",
            minimum=0.0,
            maximum=1.0,
        ),
        ParamSpec("steps", int, 2, "Denoising steps per frame.", minimum=1, maximum=8),
        ParamSpec(
            "seed",
            int,
            0,
            "Seed of the noise; fixed, a still input gives a still output.",
            minimum=0,
            maximum=2**32 - 1,
        ),
        ParamSpec(
            "guidance_scale",
            float,
            1.0,
            "LCM guidance, embedded in the UNet; 1 is none.",
            minimum=0.0,
            maximum=20.0,
        ),
        STABILITY,
    ),
    text_to_image=True,
)

TINY_CONTROLS = ("face", "canny")
_AVATAR_FOLDER_NAME = "tiny-avatar-v3"  # Bump whenever build_tiny_avatar_parts builds differently.
_CONTROL_GAIN = 2.0  # on the random ControlNets' output convs: the control visibly steers
_REFERENCE_GAIN = 3.0  # on the IP-Adapter's keys and values: the reference visibly steers


def tiny_avatar_parts(folder: Path) -> AvatarParts:
    """The tiny model's random ControlNets (face, canny) and IP-Adapter, in `folder`."""
    licence = "built here (random weights)"
    return AvatarParts(
        tuple(ControlNetWeights(c, str(folder / c), licence) for c in TINY_CONTROLS),
        IpAdapterWeights(
            "plain", str(folder / "ip-adapter"), "", IP_ADAPTER_FILE, "image_encoder", licence
        ),
    )


TINY_AVATAR = ModelInfo(
    id="tiny-avatar",
    description=(
        "The tiny model with random ControlNets (face, canny) and a random IP-Adapter, built"
        " offline: avatar mode (a reference image, a control) on a CPU, with no download."
    ),
    kind=TINY.kind,
    width=TINY.width,
    height=TINY.height,
    params=(*TINY.params, *tiny_avatar_parts(Path()).params()),
    text_to_image=True,
    takes_reference=True,
)

_FOLDER_NAME = "tiny-v1"  # Bump the version whenever build_tiny_pipeline builds differently.

# Gains on the random init, chosen by looking at outputs. Without them the
# latent carries almost none of the image, and changing the prompt or the
# guidance moves the output by less than one level.
_LATENT_GAIN = 5.0  # latent channels 0-2 = gain * (rgb - 0.5), like SD's unit-scale latents
_CROSS_ATTENTION_GAIN = 100.0  # on attn2's output: the prompt's share of each layer
_KEY_GAIN = 10.0  # on attn2's keys: sharper attention, so tokens matter, not their average
_TIME_GAIN = 10.0  # on each resnet's time projection: the timestep, guidance and pooled prompt
_GUIDANCE_GAIN = 10.0  # on the guidance projection, next to the timestep's embedding


def tiny_weights_folder() -> Path:
    """Return `$REALTIME_CACHE/tiny-v1`, building it if missing.

    REALTIME_CACHE defaults to `~/.cache/realtime`.
    """
    folder = cache_folder() / _FOLDER_NAME
    if not (folder / "model_index.json").is_file():
        build_tiny_pipeline(folder)
    return folder


def tiny_avatar_folder() -> Path:
    """Return `$REALTIME_CACHE/tiny-avatar-v3`, building it (and the tiny model) if missing."""
    folder = cache_folder() / _AVATAR_FOLDER_NAME
    if not (folder / "ip-adapter" / IP_ADAPTER_FILE).is_file():
        build_atomically(folder, partial(_build_avatar_parts, tiny_weights_folder()))
    return folder


def build_tiny_pipeline(folder: Path) -> None:
    """Save the tiny pipeline to `folder` with `save_pretrained`; the same on every call,
    safe when several processes build at once (`frames.cache.build_atomically`)."""
    logger.info("building the tiny model's random weights into %s (once)", folder)
    build_atomically(folder, _save_tiny_pipeline)


def _save_tiny_pipeline(folder: Path) -> None:
    import torch
    from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_img2img import (
        LatentConsistencyModelImg2ImgPipeline,
    )
    from diffusers.schedulers.scheduling_lcm import LCMScheduler
    from transformers import CLIPTextModel

    tokenizer = byte_tokenizer(folder / "tokenizer")
    # Seeded without disturbing the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = two_level_unet(
            sample_size=32,
            block_out_channels=(32, 64),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
            time_cond_proj_dim=32,
            # The pooled prompt also joins the time embedding, as in Kandinsky's UNet:
            # cross-attention alone moves a random UNet's output too little.
            addition_embed_type="text",
            addition_embed_type_num_heads=4,
        )
        # 12 channels: encode + decode take ~15 ms on a CPU.
        vae = small_autoencoder_tiny(12)
        text_encoder = CLIPTextModel(
            byte_text_config(
                tokenizer,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
            )
        )
        with torch.no_grad():
            _carry_image(vae)
            _amplify_conditioning(unet)

    pipeline = LatentConsistencyModelImg2ImgPipeline(
        vae=vae,  # type: ignore[arg-type]  # annotated AutoencoderKL; any VAE works
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=LCMScheduler(),
        # diffusers annotates these without None, yet documents None as the way to omit them.
        safety_checker=None,  # type: ignore[arg-type]
        feature_extractor=None,  # type: ignore[arg-type]
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)


def _build_avatar_parts(tiny: Path, folder: Path) -> None:
    """Save random ControlNets and an IP-Adapter for the tiny UNet (in `tiny`) to `folder`."""
    import torch
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    logger.info("building the tiny avatar parts' random weights into %s (once)", folder)
    unet = UNet2DConditionModel.from_pretrained(tiny / "unet")
    with torch.random.fork_rng(devices=[]):
        for seed, control in enumerate(TINY_CONTROLS):
            torch.manual_seed(seed)
            # A small conditioning embedding: the published one would cost more than the UNet.
            controlnet = random_controlnet(
                unet, _CONTROL_GAIN, conditioning_channels=(16,) * 3 + (32,)
            )
            controlnet.save_pretrained(folder / control)
        torch.manual_seed(len(TINY_CONTROLS))
        save_random_ip_adapter(folder / "ip-adapter", unet, gain=_REFERENCE_GAIN)


def load_tiny(device: str, folder: Path | None = None) -> FewStepModel:
    """Load the tiny model on `device` from `folder` (default: `tiny_weights_folder()`).

    A missing folder is built first. It is then loaded as the LCM family loads
    a hub id (`models.lcm.FAMILY.load`), in fp32, with the AutoencoderTiny it was built with.
    """
    import torch

    from models.lcm import FAMILY as LCM

    if folder is None:
        folder = tiny_weights_folder()
    elif not (folder / "model_index.json").is_file():
        build_tiny_pipeline(folder)
    return LCM.load(str(folder), device, info=TINY, tiny_vae=None, dtype=torch.float32)


def _carry_image(vae: AutoencoderTiny) -> None:
    """Make channels 0-2 of the random VAE carry the image's colours, end to end.

    A randomly initialised VAE keeps edges and loses colour and shape, and a
    stream in which you cannot see yourself is a poor demo. Channels 0-2
    become a blurred copy of R, G and B at every layer; the other channels
    stay random and add their texture to the decoded colours.
    """
    import torch
    from diffusers.models.unets.unet_2d_blocks import AutoencoderTinyBlock

    identity = torch.zeros(3, 3)
    identity[1, 1] = 1.0
    blur = torch.outer(torch.tensor([1.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 1.0])) / 16

    def carry(
        conv: torch.nn.Conv2d, kernel: torch.Tensor, gain: float = 1.0, bias: float = 0.0
    ) -> None:
        conv.weight[:3] = 0.0
        for channel in range(3):
            conv.weight[channel, channel] = kernel * gain
        if conv.bias is not None:
            conv.bias[:3] = bias

    def conv(layer: torch.nn.Module) -> torch.nn.Conv2d:
        assert isinstance(layer, torch.nn.Conv2d)
        return layer

    for layers in (vae.encoder.layers, vae.decoder.layers):
        for layer in layers:
            if isinstance(layer, torch.nn.Conv2d):
                # Blurring antialiases the strided convs and smooths the upsampled blocks.
                carry(layer, blur)
            elif isinstance(layer, AutoencoderTinyBlock):
                # relu(conv(x) + x): zero rows let x through.
                carry(conv(layer.conv[-1]), torch.zeros(3, 3))

    # The encoder's input is [0, 1]; the latent is centred like SD's.
    carry(conv(vae.encoder.layers[0]), identity)
    carry(conv(vae.encoder.layers[-1]), identity, _LATENT_GAIN, bias=-0.5 * _LATENT_GAIN)
    # Blurring the latent softens the noise the img2img steps leave in it.
    carry(conv(vae.decoder.layers[0]), blur, 1.0 / _LATENT_GAIN, bias=0.5)
    # The decoder's output is read as [0, 1]: colours plus the random channels' texture.
    to_rgb = conv(vae.decoder.layers[-1])
    texture = to_rgb.weight[:, 3:].clone()
    carry(to_rgb, identity)
    to_rgb.weight[:, 3:] = texture


def _amplify_conditioning(unet: UNet2DConditionModel) -> None:
    """Scale the UNet's prompt and guidance inputs so that they visibly steer the output."""
    import torch

    gains = {
        "attn2.to_out.0": _CROSS_ATTENTION_GAIN,
        "attn2.to_k": _KEY_GAIN,
        "time_emb_proj": _TIME_GAIN,
        "time_embedding.cond_proj": _GUIDANCE_GAIN,
    }
    for name, module in unet.named_modules():
        for suffix, gain in gains.items():
            if name.endswith(suffix):
                assert isinstance(module, torch.nn.Linear)
                module.weight.mul_(gain)


def load_tiny_avatar(device: str) -> FewStepModel:
    """The tiny model with its avatar parts (`tiny_avatar_folder()`, built if missing),
    loaded through the same `load_ip_adapter` and ControlNet paths real weights take."""
    import torch

    from models.lcm import FAMILY as LCM

    parts = tiny_avatar_parts(tiny_avatar_folder())
    return LCM.load(
        str(tiny_weights_folder()),
        device,
        info=TINY_AVATAR,
        tiny_vae=None,
        dtype=torch.float32,
        parts=parts,
    )
