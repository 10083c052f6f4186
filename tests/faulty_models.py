"""Test-only models that fail on purpose (not in the registry): a model that fails
its first batches, one that keeps failing until it is reloaded, one that runs out
of CUDA memory when a frame asks it to, and a loader that counts (and can fail or
hold) loads."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from support import input_pixels

from frames.frame import Pixels
from models.base import ModelEntry, ModelInfo, ModelInput
from models.params import ParamSpec

FAULTY = ModelInfo(
    "faulty",
    "inverts, and fails when scripted or asked to",
    "effect",
    64,
    64,
    (
        ParamSpec("fail", int, 0, "1: its batch raises RuntimeError", minimum=0, maximum=1),
        ParamSpec("oom", int, 0, "1: its batch runs out of CUDA memory", minimum=0, maximum=1),
    ),
)

BROKEN = "-" * 10_000
"""An instance that fails every batch: only a reload mends it."""


class Faulty:
    """Inverts. `script` says how its calls go, one character each: `-` raises
    RuntimeError, `+` runs; calls past its end run. Whatever the script, a batch
    with a frame asking `oom` raises torch.cuda.OutOfMemoryError and one asking
    `fail` raises RuntimeError."""

    info = FAULTY

    def __init__(self, script: str = "") -> None:
        self.script = script
        self.calls = 0
        self.batch_sizes: list[int] = []

    def warmup(self) -> None:
        pass

    def run(self, batch: Sequence[ModelInput]) -> list[Pixels]:
        self.calls += 1
        self.batch_sizes.append(len(batch))
        if any(item.params["oom"] for item in batch):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        scripted_failure = self.script[self.calls - 1 : self.calls] == "-"
        if scripted_failure or any(item.params["fail"] for item in batch):
            raise RuntimeError("simulated model failure")
        for item in batch:
            item.state["frames"] = item.state.get("frames", 0) + 1
        return [255 - input_pixels(item) for item in batch]


class Loader:
    """The registry's `load` for Faulty. Load n makes `Faulty(scripts[n - 1])` (a
    plain Faulty past the list), or raises it when it is an exception. Every load
    after the first sets `reloading`, then waits for `gate` if one is given."""

    def __init__(
        self, scripts: Sequence[str | Exception] = (), gate: threading.Event | None = None
    ) -> None:
        self.scripts = list(scripts)
        self.gate = gate
        self.loads = 0
        self.reloading = threading.Event()
        self.instances: list[Faulty] = []

    def __call__(self, device: str) -> Faulty:
        self.loads += 1
        if self.loads > 1:
            self.reloading.set()
            if self.gate is not None:
                assert self.gate.wait(30), "the test never opened the gate"
        plan = self.scripts[self.loads - 1] if self.loads <= len(self.scripts) else ""
        if isinstance(plan, Exception):
            raise plan
        model = Faulty(plan)
        self.instances.append(model)
        return model

    def entry(self) -> ModelEntry:
        return ModelEntry(FAULTY, self)
