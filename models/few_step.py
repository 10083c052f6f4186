"""The per-frame loop of few-step diffusion, shared by every diffusion family.

`FewStepModel` computes what a diffusers pipeline's `__call__` computes for one
frame (img2img) or one prompt (txt2img), without the pipeline's per-call
overhead (PIL conversions, input checks, prompt encoding, progress bars). It
keeps in each session's state what does not change between that session's
frames, and runs the frames of several sessions through each UNet call together.

What differs between families is chosen when it is built:

- text conditioning, from the pipeline's components (`models.conditioning`):
  one CLIP text encoder (SD 1.x/2.x, LCM) or two (SDXL: pooled text embeds
  and size time ids too);
- the timestep policy (`models.timesteps`): "lcm" as
  LatentConsistencyModel*Pipeline sets the timesteps, "img2img" as
  StableDiffusion(XL)Img2ImgPipeline does;
- the scheduler, copied per session from the pipeline's (or a given one);
- image conditioning (`models.image_conditioning`), where the pipeline has an
  IP-Adapter loaded (a session's reference image) or ControlNets are given (a
  control image computed from each frame, one ControlNet per control).

A session's `stability` averages its frames' encoded latents over time (each
frame's mixed with that share of the average so far) before they are noised:
the sensor noise of a still camera, which would re-roll each output, is
averaged away (less flicker), at the cost of some lag behind motion.

There is no classifier-free guidance: turbo and LCM-LoRA are distilled to run
without it (guidance_scale <= 1), and LCM's guidance is an input of its UNet
(`timestep_cond`), so each step is one UNet pass. The modules run in the dtype
the family's loader gave them (fp16 on CUDA), and on CUDA channels-last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

# Imported from their modules, not from `diffusers`: mypy reads the package's
# torch-less placeholder classes instead.
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor

from frames.frame import DevicePixels, Pixels
from frames.tensors import pixels_to_tensor, tensor_to_device_pixels, tensor_to_pixels
from models.base import ModelInfo, ModelInput
from models.conditioning import Conditioning, guidance_scale_embedding, prompt_encoder_for
from models.image_conditioning import (
    ImageConditioning,
    ReferenceEncoder,
    control_residuals,
    control_tensor,
    reference_inputs,
)
from models.params import ParamValue
from models.timesteps import Scheduler, TimestepPolicy, set_timesteps


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

    pixels: Pixels | DevicePixels | None
    conditioning: Conditioning
    timestep_cond: torch.Tensor | None
    scheduler: Scheduler
    timesteps: torch.Tensor
    seeded: _SeededNoise
    generator: torch.Generator
    image: ImageConditioning
    stability: float
    """The share of the session's average of its earlier frame latents in this one's."""
    state: dict[str, Any]

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
        controlnets: Mapping[str, Any] | None = None,
    ) -> None:
        self.info = info
        self.unet: UNet2DConditionModel = pipeline.unet
        self.vae: Any = pipeline.vae  # AutoencoderTiny, or a full AutoencoderKL
        self.prompt_encoder = prompt_encoder_for(pipeline)
        template = pipeline.scheduler if scheduler is None else scheduler
        self.scheduler_class: Any = type(template)
        self.scheduler_config = template.config
        self.timestep_policy = timesteps
        self.controlnets: dict[str, Any] = dict(controlnets or {})
        """ControlNetModels by the control they take ("face", "canny")."""
        self.reference_encoder = ReferenceEncoder.of(pipeline)
        self.device = self.unet.device
        self.dtype = self.unet.dtype
        self.latent_scale = 2 ** (len(self.vae.config["block_out_channels"]) - 1)
        # diffusers' retrieve_latents samples the encoder's distribution with the
        # generator; AutoencoderTiny returns latents.
        self.vae_samples = not isinstance(self.vae, AutoencoderTiny)
        self._warm = False
        if self.device.type == "cuda":
            # NHWC is the layout cuDNN's fp16 convolutions run fastest in.
            for module in (self.unet, self.vae, *self.controlnets.values()):
                module.to(memory_format=torch.channels_last)

    def compile(self, backend: str = "inductor") -> None:
        """Compile the UNet, where nearly all of a frame's time goes, with torch.compile:
        on CUDA in "reduce-overhead" mode, which also captures and replays CUDA graphs.
        Each new batch size or step count compiles again on first use (seconds).
        `backend="eager"` traces with dynamo and generates no code: a check of the
        compiled path in seconds where inductor's CPU code takes minutes to build."""
        mode = None
        if backend == "inductor":
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
        self.unet = cast(UNet2DConditionModel, torch.compile(self.unet, mode=mode, backend=backend))

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

    def run_on_device(self, batch: Sequence[ModelInput]) -> list[torch.Tensor]:
        """Like `run`, but each output stays on the model's device, an H x W x 3 uint8
        tensor (`DevicePixels`), for a codec that encodes there (frames/device_codec.py)."""
        return [tensor_to_device_pixels(image) for image in self.generate(batch)]

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
        scheduler: Scheduler = state["scheduler"]
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
            image=self._image_conditioning(item),
            stability=float(params.get("stability", 0.0)),
            state=state,
        )

    def _image_conditioning(self, item: ModelInput) -> ImageConditioning:
        """The frame's reference (its embedding, from the session's state while the
        reference stays the same object) and control image, where the model takes them."""
        reference = None
        if self.reference_encoder is not None and item.reference is not None:
            cached = item.state.get("reference")
            if cached is None or cached[0] is not item.reference:
                cached = item.state["reference"] = (
                    item.reference,
                    self.reference_encoder(item.reference),
                )
            reference = cached[1]
        control = item.control
        if control is None or control.control not in self.controlnets or item.pixels is None:
            control = None
        return ImageConditioning(
            reference=reference,
            reference_scale=float(item.params.get("reference_scale", 0.0)),
            control=None if control is None else control.control,
            control_image=(
                None if control is None else control_tensor(control.pixels, self.device, self.dtype)
            ),
            control_scale=float(item.params.get("control_scale", 0.0)),
        )

    def _denoise(self, frames: list[_Frame]) -> list[torch.Tensor]:
        """Run a group of frames through their steps, one UNet call per step, and decode them."""
        latents = self._initial_latents(frames)
        conditioning = Conditioning.batch([frame.conditioning for frame in frames])
        guidance = [frame.timestep_cond for frame in frames if frame.timestep_cond is not None]
        timestep_cond = torch.cat(guidance) if guidance else None
        added = dict(conditioning.added or {})
        attention: dict[str, Any] = {}
        images = [frame.image for frame in frames]
        if self.reference_encoder is not None:
            no_reference = self.reference_encoder.zeros()
            embeds, masks = reference_inputs(images, no_reference, self.device, self.dtype)
            added |= embeds
            attention |= masks
        for step in range(len(frames[0].timesteps)):
            timesteps = [frame.timesteps[step] for frame in frames]
            model_input = torch.cat(
                [
                    frame.scheduler.scale_model_input(sample, t)
                    for frame, sample, t in zip(frames, latents, timesteps, strict=True)
                ]
            )
            # One timestep per sample: the UNet embeds each on its own.
            t = torch.stack(timesteps)
            residuals = control_residuals(
                self.controlnets,
                images,
                model_input,
                t,
                conditioning.prompt_embeds,
                conditioning.added,
            )
            prediction = self.unet(
                model_input,
                t,
                encoder_hidden_states=conditioning.prompt_embeds,
                timestep_cond=timestep_cond,
                added_cond_kwargs=added or None,
                cross_attention_kwargs=attention or None,
                return_dict=False,
                **residuals,
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
            frame.scheduler.add_noise(
                self._stabilized(frame, latents[i : i + 1]), frame.seeded.noise, frame.timesteps[:1]
            )
            for i, frame in enumerate(frames)
        ]

    @staticmethod
    def _stabilized(frame: _Frame, latents: torch.Tensor) -> torch.Tensor:
        """The frame's latents with `stability` of the session's previous ones mixed in
        (an exponential average over its frames): a still camera's sensor noise is
        averaged away before the model, which would make each output of it anew."""
        previous: torch.Tensor | None = frame.state.get("stable_latents")
        if frame.stability > 0 and previous is not None and previous.shape == latents.shape:
            latents = torch.lerp(latents, previous, frame.stability)
        frame.state["stable_latents"] = latents
        return latents

    def _set_timesteps(
        self, scheduler: Scheduler, steps: int, strength: float | None
    ) -> torch.Tensor:
        """Set `scheduler` up for one frame; return the timesteps it runs. None: text to image."""
        return set_timesteps(scheduler, self.timestep_policy, steps, strength, self.device)

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
