"""Recovering from a model's failure without restarting it: out-of-memory errors.

Torch-free to import, so the worker (which must not import torch) can use it:
a model that raised `torch.cuda.OutOfMemoryError` has imported torch already,
so this module looks torch up in `sys.modules` instead of importing it.
"""

from __future__ import annotations

import gc
import sys

from models.base import Model


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is torch's CUDA out-of-memory error."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(error, torch.cuda.OutOfMemoryError)


def free_memory() -> None:
    """Collect garbage, then hand torch's cached CUDA blocks back to the driver.

    Call it once nothing refers to the tensors to be freed (not inside the
    `except` block of the failure: its traceback keeps the batch's tensors alive).
    """
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def recover_from_oom(error: BaseException) -> bool:
    """The default recovery: after a CUDA out-of-memory error, free what can be
    freed and say the model is fine (True); any other error is not recovered (False)."""
    if not is_out_of_memory(error):
        return False
    free_memory()
    return True


def recover(model: Model, error: BaseException) -> bool:
    """Called by the worker after `model.run` raised `error`: True when the error was
    transient and the model instance is fine, so the frames may be tried again.

    A model may define `recover(error) -> bool` to handle its own errors; without
    one, `recover_from_oom` applies.
    """
    hook = getattr(model, "recover", None)
    if hook is None:
        return recover_from_oom(error)
    return bool(hook(error))
