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
