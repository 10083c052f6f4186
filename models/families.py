"""The diffusion families the server runs, and which one a saved pipeline belongs to.

Each family is described once, as the `Family` record of its own module
(`sd_turbo`, `sdxl_turbo`, `lcm`); the registry, random weights and
benchmarks read it from `FAMILIES`. Every family runs on the shared per-frame
engine (`models.few_step`). Importing this module is torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models import lcm, sd_turbo, sdxl_turbo
from models.family import Family

__all__ = ["FAMILIES", "LCM", "LCM_LORA", "SDXL_TURBO", "SD_TURBO", "Family", "detect_family"]

SD_TURBO = sd_turbo.FAMILY
SDXL_TURBO = sdxl_turbo.FAMILY
LCM = lcm.FAMILY
LCM_LORA = lcm.LORA_FAMILY

FAMILIES: Mapping[str, Family] = {
    family.name: family for family in (SD_TURBO, SDXL_TURBO, LCM, LCM_LORA)
}


def detect_family(model_index: Mapping[str, Any]) -> Family:
    """The family of the pipeline whose model_index.json is `model_index`.

    A family with a LoRA (LCM-LoRA) is never the answer: its base's class is
    another family's, so it is chosen by name. Raises ValueError naming the
    pipeline class when no family runs it.
    """
    detected = [family for family in FAMILIES.values() if family.lora is None]
    class_name = model_index.get("_class_name")
    for family in detected:
        if class_name in family.pipeline_classes:
            return family
    supported = ", ".join(name for family in detected for name in family.pipeline_classes)
    raise ValueError(
        f"no model family runs pipeline class {class_name!r} (model_index.json's _class_name);"
        f" supported: {supported}"
    )
