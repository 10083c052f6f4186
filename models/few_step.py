"""The per-frame loop of few-step diffusion, shared by every diffusion family.

`FewStepModel` computes what a diffusers pipeline's `__call__` computes for one
frame (img2img) or one prompt (txt2img), without the pipeline's per-call
overhead (PIL conversions, input checks, prompt encoding, progress bars). It
keeps in each session's state what does not change between that session's
frames, and runs the frames of several sessions through each UNet call together.

What differs between families is chosen when it is built:

- text conditioning, from the pipeline's components: one CLIP text encoder
  (SD 1.x/2.x, LCM) or two (SDXL: pooled text embeds and size time ids too);
- the timestep policy: "lcm" as LatentConsistencyModel*Pipeline sets the
  timesteps, "img2img" as StableDiffusion(XL)Img2ImgPipeline does;
- the scheduler, copied per session from the pipeline's (or a given one).

There is no classifier-free guidance: turbo and LCM-LoRA are distilled to run
without it (guidance_scale <= 1), and LCM's guidance is an input of its UNet
(`timestep_cond`), so each step is one UNet pass. The modules run in the dtype
the family's loader gave them (fp16 on CUDA), and on CUDA channels-last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import numpy as np
import torch

# Imported from their modules, not from `diffusers`: mypy reads the package's
# torch-less placeholder classes instead.
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from frames.frame import Pixels
from frames.tensors import pixels_to_tensor, tensor_to_pixels
from models.base import ModelInfo, ModelInput
from models.params import ParamValue

TimestepPolicy = Literal["lcm", "img2img"]
"""Which pipeline's timesteps an input frame gets (text-to-image always runs the full schedule):
"lcm": LCM's own img2img schedule (`set_timesteps(steps, strength=...)`), at least one step;
"img2img": the last int(steps x strength) timesteps of a `steps`-step schedule."""


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


class _Scheduler(Protocol):
    """What the loop uses of a diffusers scheduler (LCM, Euler, Euler ancestral, ...)."""

    config: Mapping[str, Any]
    order: int
    timesteps: torch.Tensor
    init_noise_sigma: float | torch.Tensor

    def set_timesteps(self, num_inference_steps: int, device: torch.device, **kw: Any) -> None: ...
    def set_begin_index(self, begin_index: int) -> None: ...
    def scale_model_input(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor: ...
    def step(
        self,
        model_output: torch.Tensor,
        timestep: torch.Tensor,
        sample: torch.Tensor,
        *,
        generator: torch.Generator,
        return_dict: Literal[False],
    ) -> tuple[torch.Tensor, ...]: ...
    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor: ...


@dataclass(frozen=True, slots=True)
class _SeededNoise:
    """A session's seeded draws for one kind of frame, and its generator's state right after."""

    key: tuple[int, tuple[int, ...], bool]
    posterior_noise: torch.Tensor | None
    """For a VAE whose encoder returns a distribution: the sample's noise, drawn first."""
    noise: torch.Tensor
    generator_state: torch.Tensor


@dataclass(frozen=True, slots=True)
class _Frame:
    """One session's frame on its way through the loop."""

    pixels: Pixels | None
    conditioning: Conditioning
    timestep_cond: torch.Tensor | None
    scheduler: _Scheduler
    timesteps: torch.Tensor
    seeded: _SeededNoise
    generator: torch.Generator

    @property
    def group(self) -> tuple[bool, tuple[int, ...], int]:
        """Frames with the same group share each UNet call: same kind, latent size, step count."""
        return (self.pixels is None, tuple(self.seeded.noise.shape), len(self.timesteps))


class FewStepModel:
    """A few-step diffusion model as the worker sees it (the `models.base.Model` protocol).

    Built from a loaded diffusers pipeline (UNet2DConditionModel, a VAE, CLIP
    text encoder(s) and tokenizer(s), a scheduler), whose modules it uses and
    shares; `scheduler`, when given, replaces the pipeline's as the one each
    session copies. Call it from one thread at a time (the worker's).

    Params: prompt, strength, steps, seed, and guidance_scale when the UNet
    takes LCM's guidance embedding (`time_cond_proj_dim`). For the same input,
    params and seed, each output equals the matching diffusers pipeline's with
    `generator=torch.Generator(device).manual_seed(seed)`, whatever else is in
    the batch. A session's state keeps its scheduler, its prompt's conditioning
    and its seeded noise, each rebuilt when what it depends on changes.
    """

    def __init__(
        self,
        pipeline: DiffusionPipeline,
        info: ModelInfo,
        *,
        timesteps: TimestepPolicy,
        scheduler: Any = None,
    ) -> None:
        self.info = info
        self.unet: UNet2DConditionModel = pipeline.unet
        self.vae: Any = pipeline.vae  # AutoencoderTiny, or a full AutoencoderKL
        self.prompt_encoder = prompt_encoder_for(pipeline)
        template = pipeline.scheduler if scheduler is None else scheduler
        self.scheduler_class: Any = type(template)
        self.scheduler_config = template.config
        self.timestep_policy = timesteps
        self.device = self.unet.device
        self.dtype = self.unet.dtype
        self.latent_scale = 2 ** (len(self.vae.config["block_out_channels"]) - 1)
        # diffusers' retrieve_latents samples the encoder's distribution with the
        # generator; AutoencoderTiny returns latents.
        self.vae_samples = not isinstance(self.vae, AutoencoderTiny)
        self._warm = False
        if self.device.type == "cuda":
            # NHWC is the layout cuDNN's fp16 convolutions run fastest in.
            self.unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)

    def compile(self) -> None:
        """Compile the UNet, where nearly all of a frame's time goes, with torch.compile:
        on CUDA in "reduce-overhead" mode, which also captures and replays CUDA graphs.
        Each new batch size or step count compiles again on first use (seconds)."""
        mode = "reduce-overhead" if self.device.type == "cuda" else "default"
        self.unet = cast(UNet2DConditionModel, torch.compile(self.unet, mode=mode))

    def warmup(self) -> None:
        """Run a grey frame (and a text-to-image one, where served) once, so that the
        first session's first frame is not the slow one; later calls do nothing."""
        if self._warm:
            return
        grey = np.full((self.info.height, self.info.width, 3), 128, dtype=np.uint8)
        self.run([ModelInput(grey, self.info.default_params)])
        if self.info.text_to_image:
            self.run([ModelInput(None, self.info.default_params)])
        self._warm = True

    def run(self, batch: Sequence[ModelInput]) -> list[Pixels]:
        """Return one output per input, in order; each input's state is its session's."""
        return [tensor_to_pixels(image) for image in self.generate(batch)]

    @torch.inference_mode()
    def generate(self, batch: Sequence[ModelInput]) -> list[torch.Tensor]:
        """Like `run`, but return the decoded 1 x 3 x H x W tensors, nominally in [-1, 1]."""
        frames = [self._prepare(item) for item in batch]
        groups: dict[tuple[bool, tuple[int, ...], int], list[int]] = {}
        for index, frame in enumerate(frames):
            groups.setdefault(frame.group, []).append(index)
        outputs: dict[int, torch.Tensor] = {}
        for indices in groups.values():
            outputs.update(zip(indices, self._denoise([frames[i] for i in indices]), strict=True))
        return [outputs[index] for index in range(len(frames))]

    def _prepare(self, item: ModelInput) -> _Frame:
        """Everything one session's frame needs before the batched work, mostly from its state."""
        params, state, pixels = item.params, item.state, item.pixels
        if pixels is None:
            height, width = self.info.height, self.info.width
        else:
            height, width = pixels.shape[:2]
        if "scheduler" not in state:
            state["scheduler"] = self.scheduler_class.from_config(self.scheduler_config)
        scheduler: _Scheduler = state["scheduler"]
        strength = None if pixels is None else float(params["strength"])
        timesteps = self._set_timesteps(scheduler, int(params["steps"]), strength)
        latent_shape = (
            1,
            int(self.unet.config["in_channels"]),
            height // self.latent_scale,
            width // self.latent_scale,
        )
        seeded = self._seeded_noise(int(params["seed"]), latent_shape, pixels is None, state)
        # The pipelines draw their initial noise, then any per-step noise, from one
        # generator; restoring its state after the first draws continues that sequence.
        generator = torch.Generator(device=self.device)
        generator.set_state(seeded.generator_state)
        return _Frame(
            pixels=pixels,
            conditioning=self._conditioning(str(params["prompt"]), height, width, state),
            timestep_cond=self._timestep_cond(params),
            scheduler=scheduler,
            timesteps=timesteps,
            seeded=seeded,
            generator=generator,
        )

    def _denoise(self, frames: list[_Frame]) -> list[torch.Tensor]:
        """Run a group of frames through their steps, one UNet call per step, and decode them."""
        latents = self._initial_latents(frames)
        conditioning = Conditioning.batch([frame.conditioning for frame in frames])
        guidance = [frame.timestep_cond for frame in frames if frame.timestep_cond is not None]
        timestep_cond = torch.cat(guidance) if guidance else None
        for step in range(len(frames[0].timesteps)):
            timesteps = [frame.timesteps[step] for frame in frames]
            model_input = torch.cat(
                [
                    frame.scheduler.scale_model_input(sample, t)
                    for frame, sample, t in zip(frames, latents, timesteps, strict=True)
                ]
            )
            # One timestep per sample: the UNet embeds each on its own.
            prediction = self.unet(
                model_input,
                torch.stack(timesteps),
                encoder_hidden_states=conditioning.prompt_embeds,
                timestep_cond=timestep_cond,
                added_cond_kwargs=conditioning.added,
                return_dict=False,
            )[0]
            latents = [
                frame.scheduler.step(
                    prediction[i : i + 1], t, sample, generator=frame.generator, return_dict=False
                )[0]
                for i, (frame, sample, t) in enumerate(zip(frames, latents, timesteps, strict=True))
            ]
        # At a final step every scheduler's previous sample is its denoised estimate.
        scaled = torch.cat(latents).to(self.vae.dtype) / self.vae.config["scaling_factor"]
        decoded: torch.Tensor = self.vae.decode(scaled, return_dict=False)[0]
        return list(torch.split(decoded, 1))

    def _initial_latents(self, frames: list[_Frame]) -> list[torch.Tensor]:
        if frames[0].pixels is None:
            # Text to image: pure noise at the scale the schedule starts from.
            return [frame.seeded.noise * frame.scheduler.init_noise_sigma for frame in frames]
        images = torch.cat(
            [
                pixels_to_tensor(frame.pixels, self.device, self.vae.dtype)
                for frame in frames
                if frame.pixels is not None
            ]
        )
        # The layout of diffusers' image processor (a permuted NHWC batch): another
        # layout picks other convolution kernels, whose rounding grows through the steps.
        encoded = self.vae.encode(images.contiguous(memory_format=torch.channels_last))
        if self.vae_samples:
            distribution = encoded.latent_dist
            posterior_noise = torch.cat(
                [f.seeded.posterior_noise for f in frames if f.seeded.posterior_noise is not None]
            )
            # DiagonalGaussianDistribution.sample, with each session's own draw.
            latents = distribution.mean + distribution.std * posterior_noise
        else:
            latents = encoded.latents
        latents = self.vae.config["scaling_factor"] * latents.to(self.dtype)
        return [
            frame.scheduler.add_noise(latents[i : i + 1], frame.seeded.noise, frame.timesteps[:1])
            for i, frame in enumerate(frames)
        ]

    def _set_timesteps(
        self, scheduler: _Scheduler, steps: int, strength: float | None
    ) -> torch.Tensor:
        """Set `scheduler` up for one frame; return the timesteps it runs. None: text to image."""
        if strength is None:
            scheduler.set_timesteps(steps, device=self.device)
            return scheduler.timesteps
        if self.timestep_policy == "lcm":
            _set_lcm_timesteps(scheduler, steps, strength, self.device)
            return scheduler.timesteps
        return _set_img2img_timesteps(scheduler, steps, strength, self.device)

    def _conditioning(
        self, prompt: str, height: int, width: int, state: dict[str, Any]
    ) -> Conditioning:
        key = (prompt, height, width)
        cached: tuple[tuple[str, int, int], Conditioning] | None = state.get("prompt")
        if cached is None or cached[0] != key:
            cached = state["prompt"] = (key, self.prompt_encoder(prompt, height, width))
        return cached[1]

    def _timestep_cond(self, params: Mapping[str, ParamValue]) -> torch.Tensor | None:
        """LCM's guidance, an input of the distilled UNet rather than a second pass."""
        embedding_dim = self.unet.config["time_cond_proj_dim"]
        if embedding_dim is None:
            return None
        w = torch.tensor(float(params["guidance_scale"]) - 1).repeat(1)
        return guidance_scale_embedding(w, embedding_dim).to(device=self.device, dtype=self.dtype)

    def _seeded_noise(
        self, seed: int, shape: tuple[int, ...], text_to_image: bool, state: dict[str, Any]
    ) -> _SeededNoise:
        key = (seed, shape, text_to_image)
        cached: _SeededNoise | None = state.get("noise")
        if cached is not None and cached.key == key:
            return cached
        generator = torch.Generator(device=self.device).manual_seed(seed)
        posterior_noise = None
        if not text_to_image and self.vae_samples:
            posterior_noise = randn_tensor(
                shape, generator=generator, device=self.device, dtype=self.vae.dtype
            )
        noise = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
        seeded = _SeededNoise(key, posterior_noise, noise, generator.get_state())
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


def _tokenize(tokenizer: CLIPTokenizer, prompt: str) -> Any:
    # As the pipelines' encode_prompt: padded to the tokenizer's full length.
    return tokenizer(
        prompt,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )


def _set_img2img_timesteps(
    scheduler: _Scheduler, steps: int, strength: float, device: torch.device
) -> torch.Tensor:
    """As StableDiffusion(XL)Img2ImgPipeline: the last int(steps x strength) of `steps` timesteps.

    Raises ValueError when that is none; the families using this policy declare
    a steps x strength constraint so that a session never gets there.
    """
    scheduler.set_timesteps(steps, device=device)
    init_timestep = min(int(steps * strength), steps)
    if init_timestep < 1:
        raise ValueError(f"strength {strength:g} x steps {steps} runs no denoising step")
    t_start = max(steps - init_timestep, 0) * scheduler.order
    scheduler.set_begin_index(t_start)
    return scheduler.timesteps[t_start:]


def _set_lcm_timesteps(
    scheduler: _Scheduler, steps: int, strength: float, device: torch.device
) -> None:
    """Give `scheduler` the LCM pipeline's timesteps for `steps` and `strength`, or the nearest.

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
