"""Model ids -> what they are and how to load them.

`--model` takes a registry id (`tiny`, `invert`, a family's name such as
`sd-turbo`), `lcm-lora:BASE` (LCM-LoRA on the SD 1.5 base at BASE), or any hub
id or folder holding a diffusers pipeline of a supported family, detected from
its model_index.json. `resolve_model` turns each into a `ModelEntry`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from functools import partial

from models import effects, tiny
from models.base import Model, ModelEntry, ModelInfo
from models.families import FAMILIES, LCM_LORA, Family, detect_family
from models.loading import ModelLoadError, is_path, read_model_index

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "tiny"
"""Served when no --model is given: runs on a CPU and needs no download."""

LORA_PREFIX = f"{LCM_LORA.name}:"


class UnknownModelSpec(ValueError):
    """`--model` names nothing this server can run; the message says what it can."""


TINY_VAE = "tiny"
FULL_VAE = "full"


def _family_entry(family: Family, source: str, model_id: str, vae: str = TINY_VAE) -> ModelEntry:
    info = dataclasses.replace(family.model_info(), id=model_id)
    tiny_vae = _tiny_vae(family, vae)
    return ModelEntry(
        info,
        partial(_load_family, family, source, info, tiny_vae),
        _weight_sources(family, source, tiny_vae),
    )


def _tiny_vae(family: Family, vae: str) -> str | None:
    """The AutoencoderTiny to decode with: the family's, another one, or None: the full VAE."""
    if vae == FULL_VAE:
        return None
    return family.tiny_vae if vae == TINY_VAE else vae


def _weight_sources(family: Family, source: str, tiny_vae: str | None) -> tuple[str, ...]:
    return (source, *([family.lora] if family.lora else []), *([tiny_vae] if tiny_vae else []))


def _load_family(
    family: Family, source: str, info: ModelInfo, tiny_vae: str | None, device: str
) -> Model:
    model: Model = family.load(source, device, info=info, tiny_vae=tiny_vae)
    return model


REGISTRY: Mapping[str, ModelEntry] = {
    entry.info.id: entry
    for entry in (
        ModelEntry(tiny.TINY, tiny.load_tiny),
        ModelEntry(tiny.TINY_AVATAR, tiny.load_tiny_avatar),
        ModelEntry(effects.INVERT, effects.load_invert),
        *(_family_entry(family, family.hub_id, name) for name, family in FAMILIES.items()),
    )
}


def resolve_model(spec: str, *, random_weights: bool = False, vae: str = TINY_VAE) -> ModelEntry:
    """The entry `spec` names (see the module's doc).

    A diffusion model decodes with `vae`: "tiny" (its family's AutoencoderTiny,
    TAESD or TAESDXL), "full" (the model's own VAE: slower, finer) or the hub id
    or folder of another AutoencoderTiny.

    `random_weights` gives a family's real architecture with random weights,
    built from configs that ship with the project: nothing is read or fetched.
    Otherwise a hub id or folder's model_index.json is read (fetched unless
    cached), so missing weights fail here, fast: ModelLoadError says what to
    do. UnknownModelSpec when `spec` is none of these or its family is not
    supported.
    """
    if spec.startswith(LORA_PREFIX):
        family, source = LCM_LORA, spec.removeprefix(LORA_PREFIX)
    elif spec in FAMILIES:
        family = FAMILIES[spec]
        source = family.hub_id
    elif spec in REGISTRY:
        return REGISTRY[spec]  # tiny, invert: nothing to fetch
    elif "/" in spec or is_path(spec):
        source = spec
        try:
            family = detect_family(read_model_index(spec))
        except ValueError as error:
            raise UnknownModelSpec(f"{spec}: {error}") from None
    else:
        raise UnknownModelSpec(
            f"unknown model {spec!r}; known models: {', '.join(REGISTRY)}, "
            f"{LORA_PREFIX}BASE, or a hub id (owner/name) or folder of a diffusers pipeline"
        )
    if random_weights:
        return random_weights_entry(family, spec)
    try:
        read_model_index(source)  # weights missing: fail now, not later in the worker
    except ModelLoadError as error:
        raise ModelLoadError(error.source, error.reason, model=spec) from error
    return _family_entry(family, source, spec, vae)


def random_weights_entry(family: Family, model_id: str) -> ModelEntry:
    """`family`'s real architecture with random weights: outputs are noise; for speed."""
    info = dataclasses.replace(
        family.model_info(),
        id=model_id,
        description=f"{family.name}'s architecture with random weights: noise, for speed.",
        random_weights=True,
    )

    def load(device: str) -> Model:
        import torch

        from models.loading import resolve_device
        from models.random_weights import build_random_pipeline

        device = resolve_device(device)
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        model: Model = family.from_pipeline(build_random_pipeline(family.name, device, dtype), info)
        return model

    return ModelEntry(info, load)


def weight_sources(spec: str) -> tuple[str, ...]:
    """What `realtime pull spec` downloads, known without reading anything: a registry
    id's sources (none for models built here), LCM-LoRA's base, LoRA and tiny VAE, or
    the hub id itself (whose family, and so its tiny VAE, shows once it is fetched)."""
    if spec.startswith(LORA_PREFIX):
        source = spec.removeprefix(LORA_PREFIX)
        return _weight_sources(LCM_LORA, source, _tiny_vae(LCM_LORA, TINY_VAE))
    if spec in REGISTRY:
        return REGISTRY[spec].sources
    return (spec,)


def compiled(entry: ModelEntry) -> ModelEntry:
    """`entry`, with its model compiled by torch.compile once loaded (FewStepModel.compile:
    for GPUs). A model with nothing to compile (tiny's CPU path aside, the effects) loads
    as it is, with a warning."""

    def load(device: str) -> Model:
        model = entry.load(device)
        compile_model = getattr(model, "compile", None)
        if compile_model is None:
            logger.warning("%s has nothing to compile; --compile ignored", entry.info.id)
        else:
            logger.info(
                "compiling %s (the first frames of each batch size are slow)", entry.info.id
            )
            compile_model()
        return model

    return dataclasses.replace(entry, load=load)
