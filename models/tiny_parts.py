"""Parts of small random-weight pipelines: a byte-level tokenizer and small modules.

The byte tokenizer needs no trained vocabulary, so a random-weight text
encoder can take any prompt: the tiny model (`models.tiny`), the real
architectures of `models.random_weights` and the tests' family pipelines
(tests/family_builders.py) all use it. The UNet and AutoencoderTiny here are
the smallest shapes of those modules that keep diffusers' full code path.

Importing this module is cheap: torch, diffusers and transformers are
imported when a part is built.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
    from diffusers.models.controlnets.controlnet import ControlNetModel
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTokenizer

# CLIP's byte-level BPE with no merges, so every byte is a token.
_START, _END = "<|startoftext|>", "<|endoftext|>"
MAX_TOKENS = 77
"""CLIP's context, as every family's text encoder has it."""


def byte_tokenizer(folder: Path | None = None) -> CLIPTokenizer:
    """A CLIP tokenizer whose every byte is a token (no merges), its files written to
    `folder` (None: a temporary folder, removed once the tokenizer has read them).

    Its 514 ids (256 bytes, each also word-final, and the two specials) are far
    below CLIP's 49408, and the end token has the highest id, which is where
    CLIP's text encoders with the original eos id (2) read their pooled output.
    Give a text encoder for it `byte_text_config(tokenizer, ...)`.
    """
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="realtime-tokenizer-") as temporary:
            return byte_tokenizer(Path(temporary))

    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    # vocab.json and merges.txt are what older transformers' CLIPTokenizer reads.
    (folder / "vocab.json").write_text(json.dumps(_byte_vocab()), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_TOKENS
    )


def byte_text_config(tokenizer: CLIPTokenizer, **sizes: Any) -> CLIPTextConfig:
    """A CLIP text encoder's config for `byte_tokenizer`'s vocabulary; `sizes` are its
    dimensions (hidden_size, num_hidden_layers, projection_dim, ...)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **sizes,
    )


def two_level_unet(**structure: Any) -> UNet2DConditionModel:
    """A UNet2DConditionModel of one down and one up level, the lower one with
    cross-attention, on 4 latent channels: as small as its blocks allow.
    `structure` gives the rest (sample_size, block_out_channels, ...)."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    unet: UNet2DConditionModel = UNet2DConditionModel(
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **structure,
    )
    return unet


def small_autoencoder_tiny(channels: int) -> AutoencoderTiny:
    """An AutoencoderTiny as madebyollin/taesd is (4 latent channels, 8x smaller) with
    `channels` channels throughout. Full-resolution layers dominate its cost; with
    none but a conv at each end (num blocks 0 there), encode + decode take
    milliseconds on a CPU."""
    from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

    vae: AutoencoderTiny = AutoencoderTiny(
        encoder_block_out_channels=(channels,) * 4,
        decoder_block_out_channels=(channels,) * 4,
        num_encoder_blocks=(0, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 0),
        latent_channels=4,
    )
    return vae


def random_controlnet(
    unet: UNet2DConditionModel,
    gain: float = 1.0,
    conditioning_channels: tuple[int, ...] = (16, 32, 96, 256),
) -> ControlNetModel:
    """A ControlNet for `unet` (its encoder's structure, as `ControlNetModel.from_unet`
    makes it), taking an RGB control image at the image's size, with every layer random.

    A real ControlNet starts with zeroed output convolutions, so that training
    begins from the UNet's own behaviour; random ones, times `gain`, make the
    control image visibly steer an untrained model's output. `conditioning_channels`:
    those of the convolutions that bring the control image to the latent's size (each
    but the first halves it); by default every published ControlNet's."""
    import torch
    from diffusers.models.controlnets.controlnet import ControlNetModel

    controlnet: ControlNetModel = ControlNetModel.from_unet(
        unet,
        conditioning_embedding_out_channels=conditioning_channels,
        # Its own random weights: a ControlNet takes no guidance embedding, which LCM's
        # UNet has, so the UNet's time embedding would not load into it.
        load_weights_from_unet=False,
    )
    # from_unet leaves out the heads of the tiny model's prompt pooling (its default: 64).
    heads = unet.config.get("addition_embed_type_num_heads", 64)
    if controlnet.config["addition_embed_type_num_heads"] != heads:
        # Without the private keys: `_use_default_values` would restore the default.
        config = {k: v for k, v in controlnet.config.items() if not k.startswith("_")}
        config["addition_embed_type_num_heads"] = heads
        controlnet = ControlNetModel.from_config(config)
    zeroed = [
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
        controlnet.controlnet_cond_embedding.conv_out,
    ]
    with torch.no_grad():
        for conv in zeroed:
            assert isinstance(conv, torch.nn.Conv2d)
            torch.nn.init.kaiming_uniform_(conv.weight)
            conv.weight.mul_(gain)
    return controlnet


def save_random_ip_adapter(
    folder: Path, unet: UNet2DConditionModel, *, image_size: int = 32, gain: float = 1.0
) -> None:
    """A plain IP-Adapter for `unet` with random weights and a small CLIP image encoder,
    saved in `folder` as h94/IP-Adapter lays one out: `ip-adapter.safetensors` and
    `image_encoder/`, for `load_ip_adapter(folder, subfolder="", weight_name=
    "ip-adapter.safetensors", image_encoder_folder="image_encoder")`.

    Its image projection maps the encoder's image embedding to 4 tokens; each
    cross-attention layer gets random key and value projections for them (times
    `gain`), numbered as the original weights number them (1, 3, 5, ...)."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cross_attention_dim = int(unet.config["cross_attention_dim"])
    projection_dim = 32
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=image_size,
            patch_size=image_size // 4,
            projection_dim=projection_dim,
        )
    )
    encoder.save_pretrained(folder / "image_encoder")
    tokens = 4
    weights = {
        "image_proj.proj.weight": torch.randn(tokens * cross_attention_dim, projection_dim)
        / projection_dim**0.5,
        "image_proj.proj.bias": torch.zeros(tokens * cross_attention_dim),
        "image_proj.norm.weight": torch.ones(cross_attention_dim),
        "image_proj.norm.bias": torch.zeros(cross_attention_dim),
    }
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            to_k = unet.get_submodule(name.removesuffix(".processor") + ".to_k")
            assert isinstance(to_k, torch.nn.Linear)
            for projection in ("to_k_ip", "to_v_ip"):
                weight = torch.randn(to_k.weight.shape) * gain / to_k.in_features**0.5
                weights[f"ip_adapter.{key_id}.{projection}.weight"] = weight
            key_id += 2
    save_file(
        {name: tensor.contiguous() for name, tensor in weights.items()}, folder / IP_ADAPTER_FILE
    )


IP_ADAPTER_FILE = "ip-adapter.safetensors"
"""The weights file `save_random_ip_adapter` writes."""


def _byte_vocab() -> dict[str, int]:
    # GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others
    # are shifted past 255 so that every byte is one visible character.
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    shifted = [byte for byte in range(256) if byte not in printable]
    characters = [chr(byte) for byte in printable] + [chr(256 + i) for i in range(len(shifted))]
    tokens = characters + [character + "</w>" for character in characters] + [_START, _END]
    return {token: index for index, token in enumerate(tokens)}
