"""Loading diffusers pipelines: one code path for a hub id and a local folder.

Importing this module is cheap and torch-free, so the server can catch
`ModelLoadError` without loading anything; torch, diffusers and
huggingface_hub are imported by the functions that need them.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import torch
    from diffusers.pipelines.pipeline_utils import DiffusionPipeline

logger = logging.getLogger(__name__)

PipelineT = TypeVar("PipelineT", bound="DiffusionPipeline")

_CUDA_DEVICE = re.compile(r"cuda(:\d+)?")

HUB_PROBE_TIMEOUT_S = 3.0
"""How long `hub_unreachable` waits to connect to the Hub before it calls it unreachable."""

_PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)


class ModelLoadError(RuntimeError):
    """A model's weights cannot be loaded: not cached, no such folder, or the hub unreachable.

    The message names the source and says how to make it available; it is
    meant to be shown as is, without the traceback.
    """

    def __init__(self, source: str, reason: str, *, model: str | None = None) -> None:
        self.source = source
        self.reason = reason
        self.model = model or source
        named = source if model in (None, source) else f"{model} ({source})"
        super().__init__(
            f"cannot load model {named}: {reason.rstrip('.')}. Either run `realtime pull"
            f" {self.model}` on a machine with internet access and copy its Hugging Face cache"
            f" (HF_HOME, by default ~/.cache/huggingface) here, set HF_HOME to a Hugging Face"
            f" cache that already holds it, or pass a local folder saved with `save_pretrained`."
        )


@contextmanager
def load_errors(source: str) -> Iterator[None]:
    """Turn what says that `source` cannot be found or fetched into ModelLoadError.
    Before a hub id is looked up, an unreachable Hub puts huggingface_hub in offline
    mode (`offline_if_hub_unreachable`), so that it answers from the cache at once."""
    from huggingface_hub.errors import HFValidationError

    if is_path(source) and not Path(source).expanduser().exists():
        # diffusers would take a missing folder for a malformed hub id and say so.
        raise ModelLoadError(source, "no such folder")
    unreachable = None if is_path(source) else offline_if_hub_unreachable()
    try:
        yield
    except (OSError, HFValidationError) as exc:
        # OSError covers what huggingface_hub raises when the weights are not
        # cached and cannot be fetched: LocalEntryNotFoundError, OfflineModeIsEnabled,
        # RepositoryNotFoundError and other HTTP errors, and connection errors.
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        if unreachable is not None:
            reason = f"it is not in the Hugging Face cache and {unreachable}"
        raise ModelLoadError(source, reason) from exc


@functools.cache
def offline_if_hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be reached, after switching huggingface_hub to
    offline mode for this process; None when it can (or HF_HUB_OFFLINE is set already).
    Once per process. Without it, every lookup spends about 24 s in huggingface_hub's
    retries before it fails (or falls back to the cache)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None
    reason = hub_unreachable(constants.ENDPOINT)
    if reason is not None:
        os.environ["HF_HUB_OFFLINE"] = "1"  # for the libraries that read it when imported
        constants.HF_HUB_OFFLINE = True
        logger.info("%s: looking in the Hugging Face cache only", reason)
    return reason


def hub_unreachable(endpoint: str) -> str | None:
    """Why a TCP connection to the Hub at `endpoint` (HF_ENDPOINT's URL) fails, or None.
    Behind a proxy the Hub is reached through it, so nothing is concluded (None)."""
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    url = urlsplit(endpoint)
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S):
            return None
    except OSError as error:
        why = error.strerror or str(error) or type(error).__name__
        return f"the Hugging Face Hub ({endpoint}) cannot be reached: {why}"


def resolve_devices(devices: Sequence[str]) -> list[str]:
    """The torch devices for `devices`, one worker each: "auto" is every CUDA device
    (cuda:0, cuda:1, ...) when there is one, else "cpu"; a device named twice is
    used twice (CPU workers standing in for devices, in tests). ValueError for a
    name that is not a device, or a CUDA device this machine lacks."""
    resolved: list[str] = []
    for device in devices:
        if device == "auto":
            count = _cuda_device_count()
            resolved += [f"cuda:{index}" for index in range(count)] or ["cpu"]
            continue
        resolved.append(resolve_device(device))
        index = device.partition(":")[2]
        if index and device.startswith("cuda") and int(index) >= _cuda_device_count():
            raise ValueError(
                f"there is no {device}: this machine has {_cuda_device_count()} CUDA device(s)"
            )
    return resolved


def _cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


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
    logger.info("loading %s on %s", source, device)
    started = time.perf_counter()
    with load_errors(source):
        pipeline = pipeline_class.from_pretrained(local_or_hub(source), dtype=dtype, **options)
    pipeline.to(device)
    logger.info("loaded %s on %s in %.1f s", source, device, time.perf_counter() - started)
    return pipeline


def read_model_index(source: str) -> dict[str, Any]:
    """The model_index.json of the pipeline at `source` (a folder, or a hub id: fetched
    unless cached); ModelLoadError when it cannot be had."""
    path = read_file(source, "model_index.json")
    with load_errors(source):
        index: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return index


def read_file(source: str, path: str) -> Path:
    """The file at `path` in `source` (a folder, or a hub id: fetched unless cached);
    ModelLoadError when it cannot be had."""
    with load_errors(source):
        if is_path(source):
            found = Path(source).expanduser() / path
            if not found.is_file():
                raise ModelLoadError(source, f"no {path} in it")
            return found
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(source, path))


def download(source: str, patterns: Sequence[str] = ()) -> None:
    """Fetch `source` (a hub id) into the Hugging Face cache, with progress bars: only
    the files matching `patterns` if given (a part of a large repository), else a
    pipeline as `from_pretrained` reads it, anything else (a tiny VAE, a LoRA) whole."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    with load_errors(source):
        if patterns:
            snapshot_download(source, allow_patterns=list(patterns))
            return
        try:
            hf_hub_download(source, "model_index.json")
        except EntryNotFoundError:
            # Not a pipeline: its configs and weights, without other formats' copies.
            snapshot_download(source, allow_patterns=["*.json", "*.safetensors", "*.txt"])
            return
        from diffusers.pipelines.pipeline_utils import DiffusionPipeline

        DiffusionPipeline.download(source)


def local_or_hub(source: str) -> str:
    """What from_pretrained takes: a folder path expanded, a hub id as it is."""
    return str(Path(source).expanduser()) if is_path(source) else source


def is_path(source: str) -> bool:
    """A folder rather than a hub id, which is "name" or "owner/name": never a leading
    "/", "." or "~", never two slashes."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def is_downloaded(source: str) -> bool:
    """Whether `source`'s weights are on this machine: a folder that exists, or a hub id
    with a snapshot in the Hugging Face cache (HF_HOME)."""
    if is_path(source):
        return Path(source).expanduser().is_dir()
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    snapshots = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=source, repo_type="model")
    snapshots /= "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())
