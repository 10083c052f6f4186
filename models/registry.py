"""Model ids -> what they are and how to load them.

`--model` takes a registry id (`tiny`, `invert`, a family's name such as
`sd-turbo`), `lcm-lora:BASE` (LCM-LoRA on the SD 1.5 base at BASE), or any hub
id or folder holding a diffusers pipeline of a supported family, detected from
its model_index.json. `resolve_model` turns each into a `ModelEntry`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from functools import partial

from models import effects, tiny
from models.base import Model, ModelEntry, ModelInfo
from models.families import FAMILIES, LCM_LORA, Family, detect_family
from models.loading import ModelLoadError, is_path, read_file, read_model_index
from models.parts import AvatarParts, ControlNetWeights, IpAdapterWeights

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "tiny"
"""Served when no --model is given: runs on a CPU and needs no download."""

LORA_PREFIX = f"{LCM_LORA.name}:"


class UnknownModelSpec(ValueError):
    """`--model` names nothing this server can run; the message says what it can."""


NO_PARTS = AvatarParts()

TINY_VAE = "tiny"
FULL_VAE = "full"


def _family_entry(
    family: Family,
    source: str,
    model_id: str,
    vae: str = TINY_VAE,
    parts: AvatarParts = NO_PARTS,
) -> ModelEntry:
    info = dataclasses.replace(family.model_info(parts=parts), id=model_id)
    tiny_vae = _tiny_vae(family, vae)
    return ModelEntry(
        info,
        partial(_load_family, family, source, info, tiny_vae, parts),
        _weight_sources(family, source, tiny_vae),
    )


def avatar_parts(
    family: Family, controls: Sequence[str] = (), ip_adapter: str | None = None
) -> AvatarParts:
    """The family's ControlNets for `controls` and its IP-Adapter called `ip_adapter`
    (`--control`, `--ip-adapter`); UnknownModelSpec naming what it has when it lacks one."""
    controlnets = {controlnet.control: controlnet for controlnet in family.controlnets}
    adapters = {adapter.name: adapter for adapter in family.ip_adapters}
    for control in controls:
        if control not in controlnets:
            raise UnknownModelSpec(
                f"{family.name} has no ControlNet for control {control!r}; "
                f"it has: {', '.join(controlnets) or 'none'}"
            )
    if ip_adapter is not None and ip_adapter not in adapters:
        if not adapters:
            raise UnknownModelSpec(
                f"{family.name} has no IP-Adapter: none exists for its UNet"
                f" ({family.description}); for avatars use sdxl-turbo or the SD 1.5 line"
                " (lcm, lcm-lora)"
            )
        raise UnknownModelSpec(
            f"{family.name} has no IP-Adapter {ip_adapter!r}; it has: {', '.join(adapters)}"
        )
    return AvatarParts(
        tuple(controlnets[control] for control in dict.fromkeys(controls)),
        None if ip_adapter is None else adapters[ip_adapter],
    )


def part_flags(controls: Sequence[str], ip_adapter: str | None) -> str:
    """The command-line flags that name these parts (for `realtime pull` and `serve`)."""
    flags = "".join(f" --control {control}" for control in controls)
    return flags + (f" --ip-adapter {ip_adapter}" if ip_adapter else "")


def part_files(parts: AvatarParts) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """What `realtime pull` fetches for `parts`: each hub id with the files it loads,
    never the rest of a repository (h94/IP-Adapter holds many GB)."""
    adapters = () if parts.ip_adapter is None else (parts.ip_adapter,)
    return tuple(_part_files(part) for part in (*parts.controlnets, *adapters))


def _part_files(part: ControlNetWeights | IpAdapterWeights) -> tuple[str, tuple[str, ...]]:
    if isinstance(part, IpAdapterWeights):
        encoder = part.image_encoder_folder
        files = (
            f"{part.subfolder}/{part.weight_name}",
            f"{encoder}/config.json",
            f"{encoder}/model.safetensors",
        )
        return part.source, files
    folder = f"{part.subfolder}/" if part.subfolder else ""
    return part.source, (f"{folder}config.json", f"{folder}{part.weight_name}")


def _require_parts(parts: AvatarParts, model: str) -> None:
    """ModelLoadError, at once, for the first file of `parts` that cannot be had."""
    for source, files in part_files(parts):
        for path in files:
            try:
                read_file(source, path)
            except ModelLoadError as error:
                raise ModelLoadError(
                    error.source, f"{path}: {error.reason}", model=model
                ) from error


def _tiny_vae(family: Family, vae: str) -> str | None:
    """The AutoencoderTiny to decode with: the family's, another one, or None: the full VAE."""
    if vae == FULL_VAE:
        return None
    return family.tiny_vae if vae == TINY_VAE else vae


def _weight_sources(family: Family, source: str, tiny_vae: str | None) -> tuple[str, ...]:
    return (source, *([family.lora] if family.lora else []), *([tiny_vae] if tiny_vae else []))


def _load_family(
    family: Family,
    source: str,
    info: ModelInfo,
    tiny_vae: str | None,
    parts: AvatarParts,
    device: str,
) -> Model:
    model: Model = family.load(source, device, info=info, tiny_vae=tiny_vae, parts=parts)
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


def resolve_model(
    spec: str,
    *,
    random_weights: bool = False,
    vae: str = TINY_VAE,
    controls: Sequence[str] = (),
    ip_adapter: str | None = None,
) -> ModelEntry:
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

    `controls` and `ip_adapter` name the avatar parts it loads with (see
    `avatar_parts`); their weights are checked as the model's are.
    """
    found = _family_of(spec)
    if found is None:
        _no_parts(spec, controls, ip_adapter)
        return REGISTRY[spec]  # tiny, invert: nothing to fetch
    family, source = found
    parts = avatar_parts(family, controls, ip_adapter)
    if random_weights:
        return random_weights_entry(family, spec, parts)
    try:
        read_model_index(source)  # weights missing: fail now, not later in the worker
    except ModelLoadError as error:
        raise ModelLoadError(error.source, error.reason, model=spec) from error
    _require_parts(parts, spec + part_flags(controls, ip_adapter))
    return _family_entry(family, source, spec, vae, parts)


def _family_of(spec: str) -> tuple[Family, str] | None:
    """The family `spec` names and where its weights are; None for a registry id that
    is no family (tiny, invert). A hub id or folder's model_index.json is read."""
    if spec.startswith(LORA_PREFIX):
        return LCM_LORA, spec.removeprefix(LORA_PREFIX)
    if spec in FAMILIES:
        return FAMILIES[spec], FAMILIES[spec].hub_id
    if spec in REGISTRY:
        return None
    if "/" in spec or is_path(spec):
        try:
            return detect_family(read_model_index(spec)), spec
        except ValueError as error:
            raise UnknownModelSpec(f"{spec}: {error}") from None
    raise UnknownModelSpec(
        f"unknown model {spec!r}; known models: {', '.join(REGISTRY)}, "
        f"{LORA_PREFIX}BASE, or a hub id (owner/name) or folder of a diffusers pipeline"
    )


def _no_parts(spec: str, controls: Sequence[str], ip_adapter: str | None) -> None:
    if controls or ip_adapter is not None:
        raise UnknownModelSpec(f"{spec} takes no --control or --ip-adapter; the families do")


def part_downloads(
    spec: str, controls: Sequence[str] = (), ip_adapter: str | None = None
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """What `realtime pull spec --control ... --ip-adapter ...` fetches besides the
    model (`part_files`); UnknownModelSpec when its family lacks one."""
    if not controls and ip_adapter is None:
        return ()
    found = _family_of(spec)
    if found is None:
        _no_parts(spec, controls, ip_adapter)
        return ()
    return part_files(avatar_parts(found[0], controls, ip_adapter))


def random_weights_entry(
    family: Family, model_id: str, parts: AvatarParts = NO_PARTS
) -> ModelEntry:
    """`family`'s real architecture with random weights, and random `parts` of theirs (a
    ControlNet per control, an IP-Adapter): outputs are noise; for speed."""
    info = dataclasses.replace(
        family.model_info(parts=parts),
        id=model_id,
        description=f"{family.name}'s architecture with random weights: noise, for speed.",
        random_weights=True,
    )

    def load(device: str) -> Model:
        import torch

        from models.loading import resolve_device
        from models.random_weights import add_random_parts, build_random_pipeline

        device = resolve_device(device)
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        pipeline = build_random_pipeline(family.name, device, dtype)
        controlnets = add_random_parts(pipeline, parts)
        model: Model = family.from_pipeline(pipeline, info, controlnets)
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
