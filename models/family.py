"""What a diffusion family is: one record, and the code every family shares.

Each family's module (`sd_turbo`, `sdxl_turbo`, `lcm`) declares its `Family`:
its name, weights, pipelines, params and the configs of its random weights,
and the little that is its own (SDXL's fp32 VAE, LCM-LoRA's LoRA and
scheduler). Describing, loading and wrapping a pipeline on the few-step engine
(`models.few_step`) is the same for all: `Family.model_info`, `Family.load`
and `Family.from_pipeline`.

Importing this module is cheap and torch-free: torch and diffusers load with
the model.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from models.base import ModelInfo
from models.params import ParamSpec
from models.parts import AvatarParts, ControlNetWeights, IpAdapterWeights
from models.pipelines import (
    PROMPT,
    SEED,
    STRENGTH,
    diffusers_class,
    fuse_lora,
    load_family_pipeline,
    steps_param,
    steps_times_strength,
)

if TYPE_CHECKING:
    import torch
    from diffusers.pipelines.pipeline_utils import DiffusionPipeline

    from models.few_step import FewStepModel
    from models.timesteps import TimestepPolicy


class Own(enum.Enum):
    """The type of `OWN`."""

    OWN = "the family's own"


OWN: Final = Own.OWN
"""As `tiny_vae` or `lora` of `Family.load`: the family's own (its `tiny_vae`, its `lora`)."""


@dataclass(frozen=True, slots=True)
class RandomConfigs:
    """Where `--random-weights` finds a family's configs: folders under models/configs/
    (models/random_weights.py says where each file came from)."""

    pipeline: str
    """Its unet/, text_encoder/ (and SDXL's text_encoder_2/) and scheduler/ configs,
    laid out as in its hub repository."""
    vae: str
    """Its tiny VAE's config.json."""


@dataclass(frozen=True, slots=True, eq=False)
class Family:
    """A diffusion family on the few-step engine: what it is called, where its weights
    are, what it loads, and what its sessions can set."""

    name: str
    """Its registry id (`--model NAME`)."""
    description: str
    hub_id: str
    """Where its own weights are on the hub: what its name stands for in `--model`."""
    pipeline_classes: tuple[str, str]
    """The diffusers pipelines (model_index.json `_class_name`s) of its weights: text to
    image, then image to image. `detect_family` knows it by either; `load` builds the
    second, `--random-weights` the first."""
    tiny_vae: str
    """The AutoencoderTiny its latents decode with by default (TAESD, TAESDXL)."""
    max_steps: int
    default_steps: int
    """The `steps` param's maximum and default."""
    timesteps: TimestepPolicy
    """The timesteps of an input frame (`models.timesteps`). With "img2img", steps x
    strength of them, so its params carry the constraint steps x strength >= 1."""
    random_configs: RandomConfigs
    parameters: float
    """Its size, roughly: the parameters of its UNet and text encoder(s). Benchmarks run
    the smallest first."""
    width: int = 512
    height: int = 512
    """Its native size, the default of `model_info`."""
    extra_params: tuple[ParamSpec, ...] = ()
    """Params after prompt, strength, steps and seed (LCM's guidance_scale)."""
    pipeline_options: Mapping[str, Any] = field(default_factory=dict)
    """What its pipelines are built with, besides their components (from_pretrained's
    options): the parts the server never runs left out."""
    prepare: Callable[[Any], None] | None = None
    """Called by `load` with the loaded pipeline, before it is wrapped."""
    lora: str | None = None
    """LoRA weights `load` fuses into the UNet of the base at `hub_id` by default."""
    scheduler: str | None = None
    """The diffusers scheduler class it runs with its pipeline's scheduler config, where
    that is not the pipeline's own (LCM-LoRA runs its SD base with LCMScheduler)."""
    licence: str = ""
    """The licence of its own weights (and its LoRA's), as `realtime models` shows it."""
    controlnets: tuple[ControlNetWeights, ...] = ()
    """The ControlNets that exist for its UNet, one per control signal (models.parts)."""
    ip_adapters: tuple[IpAdapterWeights, ...] = ()
    """The IP-Adapters that exist for its UNet; none for SD 2.1 (sd-turbo)."""

    def model_info(
        self,
        *,
        width: int | None = None,
        height: int | None = None,
        parts: AvatarParts = AvatarParts(),  # noqa: B008  TEMPORARY shim (parts branch): the lead's lands
    ) -> ModelInfo:
        """Its description, params and constraints, at `width` x `height` (multiples of
        8; by default its native size)."""
        runs_a_share = self.timesteps == "img2img"
        steps = steps_param(
            maximum=self.max_steps, default=self.default_steps, img2img_runs_a_share=runs_a_share
        )
        return ModelInfo(
            id=self.name,
            description=self.description,
            kind="img2img",
            width=self.width if width is None else width,
            height=self.height if height is None else height,
            params=(PROMPT, STRENGTH, steps, SEED, *self.extra_params),
            constraints=(steps_times_strength(self.name),) if runs_a_share else (),
            text_to_image=True,
        )

    def from_pipeline(
        self, pipeline: DiffusionPipeline, info: ModelInfo | None = None
    ) -> FewStepModel:
        """Wrap an already-loaded pipeline of this family (any class with its components)
        as a model; `info` defaults to `model_info()`."""
        from models.few_step import FewStepModel

        scheduler = None
        if self.scheduler is not None:
            scheduler = diffusers_class(self.scheduler).from_config(pipeline.scheduler.config)
        return FewStepModel(
            pipeline, info or self.model_info(), timesteps=self.timesteps, scheduler=scheduler
        )

    def load(
        self,
        source: str | None = None,
        device: str = "auto",
        *,
        info: ModelInfo | None = None,
        tiny_vae: str | Own | None = OWN,
        lora: str | Own | None = OWN,
        dtype: torch.dtype | None = None,
        parts: AvatarParts = AvatarParts(),  # noqa: B008  TEMPORARY shim (parts branch): the lead's lands
    ) -> FewStepModel:
        """Load the family from `source` (a hub id or a folder; by default `hub_id`) onto
        `device`; the worker warms it up.

        `tiny_vae` (a hub id or a folder) replaces the full VAE, None keeps it;
        `lora` (a hub id or a folder) is fused into the UNet, None fuses none;
        `dtype` None picks fp16 on CUDA, fp32 elsewhere. Raises
        models.loading.ModelLoadError when weights are missing.
        """
        if parts:  # TEMPORARY shim (parts branch)
            raise NotImplementedError("avatar parts: the lead's Family.load lands them")
        pipeline = load_family_pipeline(
            diffusers_class(self.pipeline_classes[1]),
            source or self.hub_id,
            device,
            tiny_vae=self.tiny_vae if isinstance(tiny_vae, Own) else tiny_vae,
            dtype=dtype,
            **self.pipeline_options,
        )
        if self.prepare is not None:
            self.prepare(pipeline)
        lora = self.lora if isinstance(lora, Own) else lora
        if lora is not None:
            fuse_lora(pipeline, lora)
        return self.from_pipeline(pipeline, info)
