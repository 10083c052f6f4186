"""Prompts and guidance as the UNet takes them, as diffusers' pipelines compute them.

Text conditioning is chosen from a pipeline's components: one CLIP text
encoder (SD 1.x/2.x, LCM) or two (SDXL: pooled text embeds and size time ids
too). LCM's guidance is an input of its UNet (`guidance_scale_embedding`).
The few-step engine (`models.few_step`) keeps a session's conditioning in its
state and batches several sessions' for one UNet call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

# Imported from their modules, not from `diffusers`: mypy reads the package's
# torch-less placeholder classes instead.
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer


@dataclass(frozen=True, slots=True)
class Conditioning:
    """Prompts as the UNet takes them: one from a prompt encoder, several from `batch`."""

    prompt_embeds: torch.Tensor
    added: Mapping[str, torch.Tensor] | None = None
    """SDXL's `added_cond_kwargs`: the pooled `text_embeds` and the size `time_ids`."""

    @staticmethod
    def batch(items: Sequence[Conditioning]) -> Conditioning:
        """Several prompts' conditioning as one batch, in order."""
        embeds = torch.cat([item.prompt_embeds for item in items])
        added = [item.added for item in items if item.added is not None]
        if not added:
            return Conditioning(embeds)
        return Conditioning(
            embeds, {name: torch.cat([a[name] for a in added]) for name in added[0]}
        )


class ClipPromptEncoder:
    """SD 1.x/2.x and LCM: the last hidden state of one CLIP text encoder.

    As StableDiffusionImg2ImgPipeline.encode_prompt with clip_skip None.
    """

    def __init__(self, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder

    def __call__(self, prompt: str, height: int, width: int) -> Conditioning:
        tokens = _tokenize(self.tokenizer, prompt)
        device = self.text_encoder.device
        attention_mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            attention_mask = tokens.attention_mask.to(device)
        embeds = self.text_encoder(tokens.input_ids.to(device), attention_mask=attention_mask)[0]
        return Conditioning(embeds.to(dtype=self.text_encoder.dtype))


class SdxlPromptEncoder:
    """SDXL: both encoders' penultimate hidden states side by side, the second's
    pooled projection, and the size conditioning (original size = target size =
    the image's, no crop).

    As StableDiffusionXL(Img2Img)Pipeline with clip_skip None and
    requires_aesthetics_score False.
    """

    def __init__(
        self,
        tokenizers: tuple[CLIPTokenizer, CLIPTokenizer],
        text_encoders: tuple[CLIPTextModel, CLIPTextModelWithProjection],
    ) -> None:
        self.tokenizers = tokenizers
        self.text_encoders = text_encoders

    def __call__(self, prompt: str, height: int, width: int) -> Conditioning:
        hidden_states = []
        pooled = None
        for tokenizer, text_encoder in zip(self.tokenizers, self.text_encoders, strict=True):
            input_ids = _tokenize(tokenizer, prompt).input_ids.to(text_encoder.device)
            output = text_encoder(input_ids, output_hidden_states=True)
            # Only the projection model's first output is 2-D: the pooled prompt.
            if pooled is None and output[0].ndim == 2:
                pooled = output[0]
            hidden_states.append(output.hidden_states[-2])
        if pooled is None:
            raise ValueError("SDXL's second text encoder must be a CLIPTextModelWithProjection")
        embeds = torch.concat(hidden_states, dim=-1).to(dtype=self.text_encoders[-1].dtype)
        # original_size + crops_coords_top_left + target_size
        time_ids = torch.tensor(
            [[height, width, 0, 0, height, width]], dtype=embeds.dtype, device=embeds.device
        )
        return Conditioning(embeds, {"text_embeds": pooled, "time_ids": time_ids})


class PromptEncoder(Protocol):
    """A family's text conditioning: a prompt, for an image of height x width."""

    def __call__(self, prompt: str, height: int, width: int) -> Conditioning: ...


def prompt_encoder_for(pipeline: DiffusionPipeline) -> PromptEncoder:
    """The text conditioning `pipeline`'s components call for: SDXL's with two encoders."""
    if getattr(pipeline, "text_encoder_2", None) is not None:
        return SdxlPromptEncoder(
            (pipeline.tokenizer, pipeline.tokenizer_2),
            (pipeline.text_encoder, pipeline.text_encoder_2),
        )
    return ClipPromptEncoder(pipeline.tokenizer, pipeline.text_encoder)


def guidance_scale_embedding(w: torch.Tensor, embedding_dim: int) -> torch.Tensor:
    """Sinusoidal embedding of guidance weights `w` (shape (batch,)), as LCM was distilled with.

    The pipeline's `get_guidance_scale_embedding`, op for op: with w * 1000 in
    the thousands, any other rounding of the frequencies shows in the sines.
    """
    w = w * 1000.0
    half_dim = embedding_dim // 2
    exponent = torch.log(torch.tensor(10000.0)) / (half_dim - 1)
    frequencies = torch.exp(torch.arange(half_dim, dtype=torch.float32) * -exponent)
    angles = w.to(torch.float32)[:, None] * frequencies[None, :]
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if embedding_dim % 2 == 1:
        embedding = torch.nn.functional.pad(embedding, (0, 1))
    return embedding


def _tokenize(tokenizer: CLIPTokenizer, prompt: str) -> Any:
    # As the pipelines' encode_prompt: padded to the tokenizer's full length.
    return tokenizer(
        prompt,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
