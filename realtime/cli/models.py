"""`realtime models` lists what this server can serve and whether its weights are
here; `realtime pull` downloads them."""

from __future__ import annotations

import argparse
import contextlib
import sys

from models.loading import ModelLoadError, download, is_downloaded
from models.registry import REGISTRY, UnknownModelSpec, resolve_model, weight_sources


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
    pull.set_defaults(run=lambda args, parser: pull_model(args.model), command_parser=pull)


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
    print("\nmissing weights: `realtime pull ID` where the Hugging Face Hub is reachable")
    return 0


def pull_model(spec: str) -> int:
    """Download what `--model spec` loads; a hub id that is not a pipeline (a tiny VAE,
    a LoRA) is downloaded as it is."""
    try:
        sources = weight_sources(spec)
        for source in sources:
            print(f"pulling {source}", flush=True)
            download(source)
        if sources == (spec,):
            # A pipeline also needs its family's tiny autoencoder; anything else is done.
            with contextlib.suppress(UnknownModelSpec, ModelLoadError):
                for source in resolve_model(spec).sources[1:]:
                    print(f"pulling {source}", flush=True)
                    download(source)
    except ModelLoadError as error:
        print(
            f"realtime pull: cannot download {error.source}: {error.reason.rstrip('.')}."
            " Pulling needs the Hugging Face Hub (huggingface.co, or a mirror named by"
            " HF_ENDPOINT) and HF_HUB_OFFLINE unset; copy the resulting cache (HF_HOME) to"
            " machines without access.",
            file=sys.stderr,
        )
        return 1
    if not sources:
        print(f"{spec} needs no download: it is built on this machine")
    else:
        print(f"{spec} is in the Hugging Face cache: `realtime serve --model {spec}`")
    return 0
