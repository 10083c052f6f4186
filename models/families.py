"""The diffusion families the server runs, and which one a saved pipeline belongs to.

Each family is one module (`sd_turbo`, `sdxl_turbo`, `lcm`) on the shared
per-frame engine (`models.few_step`). Importing this module is torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from models import lcm, sd_turbo, sdxl_turbo
from models.base import Model, ModelInfo
from models.pipelines import TAESD, TAESDXL


@dataclass(frozen=True, slots=True)
class Family:
    """A diffusion family: what it is called, what it loads, and how."""

    name: str
    pipeline_classes: tuple[str, ...]
    """The diffusers pipeline `_class_name`s (model_index.json) of its weights."""
    width: int
    height: int
    """Its native size, the default of `model_info`."""
    model_info: Callable[..., ModelInfo]
    """`model_info(*, width, height) -> ModelInfo`."""
    load: Callable[..., Model]
    """`load(source, device, *, info=None, tiny_vae=..., dtype=None) -> Model`: a hub id or
    a folder (the worker warms it up); raises models.loading.ModelLoadError when weights
    are missing."""
    from_pipeline: Callable[..., Model]
    """`from_pipeline(pipeline, info=None) -> Model`: wraps an already-loaded pipeline."""
    hub_id: str
    """Where its own weights are on the hub: what its name stands for in `--model`."""
    tiny_vae: str
    """The AutoencoderTiny its latents decode with by default (TAESD, TAESDXL)."""
    lora: str | None = None
    """LoRA weights its `load` fuses into the base's UNet by default."""


SD_TURBO = Family(
    sd_turbo.NAME,
    sd_turbo.PIPELINE_CLASSES,
    sd_turbo.WIDTH,
    sd_turbo.HEIGHT,
    sd_turbo.model_info,
    sd_turbo.load,
    sd_turbo.from_pipeline,
    sd_turbo.HUB_ID,
    TAESD,
)
SDXL_TURBO = Family(
    sdxl_turbo.NAME,
    sdxl_turbo.PIPELINE_CLASSES,
    sdxl_turbo.WIDTH,
    sdxl_turbo.HEIGHT,
    sdxl_turbo.model_info,
    sdxl_turbo.load,
    sdxl_turbo.from_pipeline,
    sdxl_turbo.HUB_ID,
    TAESDXL,
)
LCM = Family(
    lcm.NAME,
    lcm.PIPELINE_CLASSES,
    lcm.WIDTH,
    lcm.HEIGHT,
    lcm.model_info,
    lcm.load,
    lcm.from_pipeline,
    lcm.HUB_ID,
    TAESD,
)
LCM_LORA = Family(
    lcm.LORA_NAME,
    lcm.LORA_PIPELINE_CLASSES,
    lcm.WIDTH,
    lcm.HEIGHT,
    lcm.lora_model_info,
    lcm.load_lora,
    lcm.lora_from_pipeline,
    lcm.LORA_BASE_HUB_ID,
    TAESD,
    lcm.LORA_HUB_ID,
)

FAMILIES: Mapping[str, Family] = {
    family.name: family for family in (SD_TURBO, SDXL_TURBO, LCM, LCM_LORA)
}

# LCM-LoRA's base is a plain SD pipeline: it is chosen by name, never detected.
_DETECTED = (SD_TURBO, SDXL_TURBO, LCM)


def detect_family(model_index: Mapping[str, Any]) -> Family:
    """The family of the pipeline whose model_index.json is `model_index`.

    Raises ValueError naming the pipeline class when no family runs it.
    """
    class_name = model_index.get("_class_name")
    for family in _DETECTED:
        if class_name in family.pipeline_classes:
            return family
    supported = ", ".join(name for family in _DETECTED for name in family.pipeline_classes)
    raise ValueError(
        f"no model family runs pipeline class {class_name!r} (model_index.json's _class_name);"
        f" supported: {supported}"
    )
