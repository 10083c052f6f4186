"""Loading diffusers pipelines: one code path for a hub id and a local folder.

Importing this module is cheap and torch-free, so the server can catch
`ModelLoadError` without loading anything; torch, diffusers and
huggingface_hub are imported by the functions that need them.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch
    from diffusers.pipelines.pipeline_utils import DiffusionPipeline

logger = logging.getLogger(__name__)

PipelineT = TypeVar("PipelineT", bound="DiffusionPipeline")

_CUDA_DEVICE = re.compile(r"cuda(:\d+)?")


class ModelLoadError(RuntimeError):
    """A model's weights cannot be loaded: not cached, no such folder, or the hub unreachable.

    The message names the source and says how to make it available; it is
    meant to be shown as is, without the traceback.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(
            f"cannot load model {source!r}: {reason.rstrip('.')}. Either download it on a"
            f" machine with internet access (`hf download {source}`, or"
            f" `huggingface-cli download {source}` with older huggingface_hub) and copy that"
            f" Hugging Face cache here, set HF_HOME to a Hugging Face cache that already holds"
            f" it, or pass a local folder saved with `save_pretrained`."
        )


def resolve_device(device: str) -> str:
    """Return the torch device for `device`: "auto" picks "cuda" when available, else "cpu".

    "cpu", "cuda" and "cuda:N" pass through unchanged; anything else raises ValueError.
    """
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or _CUDA_DEVICE.fullmatch(device):
        return device
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")


def load_pipeline(
    pipeline_class: type[PipelineT],
    source: str,
    *,
    device: str,
    dtype: torch.dtype,
    **options: Any,
) -> PipelineT:
    """Load `pipeline_class` from `source` (a hub id or a local folder) onto `device`.

    `options` go to `from_pretrained` as they are (`variant="fp16"`,
    `requires_safety_checker=False`, ...). Weights that are not on this
    machine and cannot be fetched raise ModelLoadError; any other failure
    (a broken config, out of memory) propagates unchanged.
    """
    from huggingface_hub.errors import HFValidationError

    if _looks_like_path(source) and not Path(source).expanduser().is_dir():
        # diffusers would take a missing folder for a malformed hub id and say so.
        raise ModelLoadError(source, "no such folder")
    logger.info("loading %s on %s", source, device)
    started = time.perf_counter()
    try:
        pipeline = pipeline_class.from_pretrained(
            str(Path(source).expanduser()) if _looks_like_path(source) else source,
            dtype=dtype,
            **options,
        )
    except (OSError, HFValidationError) as exc:
        # OSError covers what huggingface_hub raises when the weights are not
        # cached and cannot be fetched: LocalEntryNotFoundError, OfflineModeIsEnabled,
        # RepositoryNotFoundError and other HTTP errors, and connection errors.
        raise ModelLoadError(source, _first_line(exc)) from exc
    pipeline.to(device)
    logger.info("loaded %s on %s in %.1f s", source, device, time.perf_counter() - started)
    return pipeline


def _looks_like_path(source: str) -> bool:
    # A hub id is "name" or "owner/name": never a leading "/", "." or "~", never two slashes.
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
