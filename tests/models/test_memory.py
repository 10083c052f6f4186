"""models.memory: recognising CUDA out-of-memory errors and freeing memory after one."""

import pytest
import torch

from models.effects import InvertModel
from models.few_step import FewStepModel
from models.memory import is_out_of_memory, recover, recover_from_oom

OOM = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.fixture
def emptied(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Pretend CUDA is there, and record each `torch.cuda.empty_cache`."""
    calls: list[bool] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(True))
    return calls


def test_only_cuda_out_of_memory_is_out_of_memory() -> None:
    assert is_out_of_memory(OOM)
    assert not is_out_of_memory(RuntimeError("CUDA error: an illegal memory access"))
    assert not is_out_of_memory(MemoryError())


def test_recovering_from_out_of_memory_empties_the_cuda_cache(emptied: list[bool]) -> None:
    assert recover_from_oom(OOM)
    assert emptied == [True]


def test_other_errors_are_not_recovered_and_free_nothing(emptied: list[bool]) -> None:
    assert not recover_from_oom(ValueError("bad prompt"))
    assert emptied == []


class OwnRecovery(InvertModel):
    def __init__(self) -> None:
        self.seen: list[BaseException] = []

    def recover(self, error: BaseException) -> bool:
        self.seen.append(error)
        return isinstance(error, ValueError)


def test_a_models_own_recover_decides_and_the_default_applies_without_one(
    emptied: list[bool],
) -> None:
    model = OwnRecovery()
    assert recover(model, ValueError("transient"))
    assert not recover(model, OOM)
    assert len(model.seen) == 2 and emptied == []
    assert recover(InvertModel(), OOM)
    assert emptied == [True]


def test_the_tiny_diffusers_model_recovers_from_out_of_memory(emptied: list[bool]) -> None:
    tiny = FewStepModel.__new__(FewStepModel)  # recovering needs no weights
    assert recover(tiny, OOM)  # the default recovery serves diffusers models
    assert not recover(tiny, RuntimeError("shape mismatch"))
    assert emptied == [True]
