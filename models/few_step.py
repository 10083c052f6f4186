"""The per-frame fast path of latent-consistency img2img: a short explicit loop.

`FewStepImg2Img` computes what diffusers' `LatentConsistencyModelImg2ImgPipeline`
computes for one image, without the pipeline's per-call overhead (PIL
conversions, input checks, prompt encoding, progress bars) and with what does
not change between a session's frames kept in the session's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

# Imported from their modules, not from `diffusers`: mypy reads the package's
# torch-less placeholder classes instead.
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_img2img import (
    LatentConsistencyModelImg2ImgPipeline,
)
from diffusers.schedulers.scheduling_lcm import LCMScheduler
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from frames.frame import Pixels
from frames.tensors import pixels_to_tensor, tensor_to_pixels
from models.params import ParamValue


@dataclass(frozen=True, slots=True)
class _SeededNoise:
    """A session's initial noise and its generator's state right after drawing it."""

    key: tuple[int, tuple[int, ...]]
    noise: torch.Tensor
    generator_state: torch.Tensor


class FewStepImg2Img:
    """One frame of LCM img2img: encode, noise, a few UNet steps, decode.

    Built from a loaded `LatentConsistencyModelImg2ImgPipeline` whose vae is an
    `AutoencoderTiny`; it shares the pipeline's modules and never changes them.
    Call it from one thread at a time (the worker's): the modules are shared,
    the scheduler is per session.

    For the same image, params and seed the output equals the pipeline's
    `__call__` with `generator=torch.Generator(device).manual_seed(seed)`.
    It keeps in the session's state its scheduler, the prompt's embedding
    and the seeded noise, each rebuilt when what it depends on changes.
    """

    def __init__(self, pipeline: LatentConsistencyModelImg2ImgPipeline) -> None:
        self.unet: UNet2DConditionModel = pipeline.unet
        self.vae: AutoencoderTiny = pipeline.vae
        self.text_encoder: CLIPTextModel = pipeline.text_encoder
        self.tokenizer: CLIPTokenizer = pipeline.tokenizer
        self.scheduler_config = pipeline.scheduler.config
        self.device = self.unet.device
        self.dtype = self.unet.dtype

    def __call__(
        self, pixels: Pixels, params: Mapping[str, ParamValue], state: dict[str, Any]
    ) -> Pixels:
        """Return the output for `pixels` (H x W x 3 uint8, H and W multiples of 8).

        `params` holds prompt, strength, steps, seed and guidance_scale, already
        validated. `state` is the session's own dict, empty on its first frame.
        """
        return tensor_to_pixels(self.generate(pixels, params, state))

    @torch.inference_mode()
    def generate(
        self, pixels: Pixels, params: Mapping[str, ParamValue], state: dict[str, Any]
    ) -> torch.Tensor:
        """Like `__call__`, but return the decoded 1 x 3 x H x W tensor, nominally in [-1, 1]."""
        prompt = str(params["prompt"])
        strength = float(params["strength"])
        steps = int(params["steps"])
        seed = int(params["seed"])
        guidance_scale = float(params["guidance_scale"])

        # 1. Prompt embedding, recomputed only when the prompt changes.
        prompt_embeds = self._prompt_embeds(prompt, state)

        # 2. Timesteps, from the session's own scheduler (it keeps a step index).
        scheduler: LCMScheduler | None = state.get("scheduler")
        if scheduler is None:
            scheduler = state["scheduler"] = LCMScheduler.from_config(self.scheduler_config)
        _set_timesteps(scheduler, steps, strength, self.device)
        timesteps = scheduler.timesteps

        # 3. Encode the image and noise it to the first timestep.
        image = pixels_to_tensor(pixels, self.device, self.dtype)
        latents = self.vae.encode(image).latents * self.vae.config["scaling_factor"]
        seeded = self._seeded_noise(seed, latents, state)
        # The pipeline draws its noise and then LCM's inter-step noise from one
        # generator; restoring the state after the first draw continues that sequence.
        generator = torch.Generator(device=self.device)
        generator.set_state(seeded.generator_state)
        # add_noise is annotated IntTensor; diffusers' pipelines pass these int64 timesteps too.
        latents = scheduler.add_noise(latents, seeded.noise, timesteps[:1])  # type: ignore[arg-type]

        # 4. LCM's guidance is an input of the distilled UNet, not a second pass.
        timestep_cond = None
        if self.unet.config["time_cond_proj_dim"] is not None:
            w = torch.tensor(guidance_scale - 1).repeat(latents.shape[0])
            timestep_cond = guidance_scale_embedding(w, self.unet.config["time_cond_proj_dim"]).to(
                device=self.device, dtype=latents.dtype
            )

        # 5. The few denoising steps.
        denoised = latents
        for t in timesteps:
            model_pred = self.unet(
                latents,
                t,
                timestep_cond=timestep_cond,
                encoder_hidden_states=prompt_embeds,
                return_dict=False,
            )[0]
            latents, denoised = scheduler.step(
                model_pred, t, latents, generator=generator, return_dict=False
            )

        # 6. Decode LCM's denoised estimate (the last step's `latents` equal it).
        decoded: torch.Tensor = self.vae.decode(
            denoised / self.vae.config["scaling_factor"], return_dict=False
        )[0]
        return decoded

    def _prompt_embeds(self, prompt: str, state: dict[str, Any]) -> torch.Tensor:
        cached = state.get("prompt_embeds")
        if cached is not None and cached[0] == prompt:
            embeds: torch.Tensor = cached[1]
            return embeds
        # As the pipeline's encode_prompt: padded to the tokenizer's full length.
        tokens = self.tokenizer(
            prompt,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        attention_mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            attention_mask = tokens.attention_mask.to(self.device)
        embeds = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=attention_mask)[
            0
        ]
        embeds = embeds.to(device=self.device, dtype=self.text_encoder.dtype)
        state["prompt_embeds"] = (prompt, embeds)
        return embeds

    def _seeded_noise(
        self, seed: int, latents: torch.Tensor, state: dict[str, Any]
    ) -> _SeededNoise:
        key = (seed, tuple(latents.shape))
        cached: _SeededNoise | None = state.get("noise")
        if cached is not None and cached.key == key:
            return cached
        generator = torch.Generator(device=self.device).manual_seed(seed)
        noise = randn_tensor(
            latents.shape, generator=generator, device=self.device, dtype=latents.dtype
        )
        seeded = _SeededNoise(key, noise, generator.get_state())
        state["noise"] = seeded
        return seeded


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


def _set_timesteps(
    scheduler: LCMScheduler, steps: int, strength: float, device: torch.device
) -> None:
    """Give `scheduler` the pipeline's timesteps for `steps` and `strength`, or the nearest.

    LCM draws img2img timesteps from the first int(original_inference_steps *
    strength) timesteps of its distillation schedule, and diffusers raises
    ValueError when that leaves fewer than `steps`. A strength slider dragged
    toward 0 must not fail the session, so run as many steps as exist, and at
    least one: a frame with none would bypass the model (no prompt, no noise,
    not even the VAE's look) and the output would jump between two styles as
    the slider crosses the threshold. That one step is at the schedule's
    smallest timestep, the least change LCM can make.
    """
    original_steps: int = scheduler.config["original_inference_steps"]
    available = int(original_steps * strength)
    if available >= 1:
        scheduler.set_timesteps(min(steps, available), device=device, strength=strength)
    else:
        # 1.5 / n, not 1 / n: int(n * (1 / n)) can round down to 0.
        scheduler.set_timesteps(1, device=device, strength=min(1.0, 1.5 / original_steps))
