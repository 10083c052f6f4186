"""What every model family provides: its description, warm-up and a batched call."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from frames.frame import ControlImage, DevicePixels, Pixels
from models.params import Constraint, ParamSpec, ParamValue

ModelKind = Literal["img2img", "txt2img", "effect"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model as clients see it: GET /v1/models lists these."""

    id: str
    description: str
    kind: ModelKind
    width: int
    height: int
    params: tuple[ParamSpec, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    """Checks across params (steps x strength >= 1, ...), run on every update."""
    text_to_image: bool = False
    """Makes an image from its params alone (`ModelInput.pixels` None) for a session
    that sends no frames."""
    random_weights: bool = False
    """Real architecture, random weights: its outputs are noise (for speed measurements)."""
    takes_reference: bool = False
    """Conditions its outputs on a session's reference image (an IP-Adapter is loaded)."""

    @property
    def default_params(self) -> dict[str, ParamValue]:
        return {spec.name: spec.default for spec in self.params}


@dataclass(slots=True)
class ModelInput:
    """One session's frame in a batch, or None for an image from the params alone
    (type-to-image, only for models whose `info.text_to_image` is set).

    `state` belongs to the session, not the shared model: a family keeps there
    what it may reuse on the session's next frame (prompt embeddings, seeded
    noise, scheduler state). The worker creates it empty and drops it when the
    session ends; only the worker's thread touches it.
    """

    pixels: Pixels | DevicePixels | None
    """H x W x 3 uint8: an array, or a tensor on the model's device where the worker's
    codec decodes there (frames/device_codec.py: then only for a model with `run_on_device`)."""
    params: Mapping[str, ParamValue]
    state: dict[str, Any] = field(default_factory=dict)
    reference: Pixels | None = None
    """The session's reference image (a model whose `info.takes_reference` is set):
    the same object for as long as the reference stays, so its embedding is computed
    once."""
    control: ControlImage | None = None
    """The control image computed from `pixels` (for a model with ControlNets)."""


class Model(Protocol):
    """A loaded model, owned by exactly one worker thread.

    `run` takes frames at `info.width` x `info.height` (or None, see ModelInput)
    and returns one output per input, in order, at that size. It may raise; the worker reports the
    error to the sessions of that batch and goes on, and reloads the model when
    it keeps raising (realtime/server/worker.py, by session/restarts.py).

    Optionally, `recover(error) -> bool`: called after `run` raised `error`; free
    what the failure left behind and return True when the model is fine and the
    frames may be tried again. Without it, `models.memory.recover_from_oom`
    applies: CUDA out-of-memory errors are recovered, others are not.
    """

    info: ModelInfo

    def warmup(self) -> None: ...

    def run(self, batch: Sequence[ModelInput]) -> list[Pixels]: ...


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A registry entry: what the model is, and how to load it."""

    info: ModelInfo
    load: Callable[[str], Model]
    """Loads the model onto a device ("cpu", "cuda", "cuda:1"); may take long."""
    sources: tuple[str, ...] = ()
    """The hub ids or folders its weights come from (`realtime pull` fetches them)."""
