"""Which timesteps a frame runs, as the pipelines a family matches set them.

Text to image always runs the scheduler's full schedule; an input frame runs a
share of it by the family's policy (`TimestepPolicy`). Each session has its own
scheduler (`Scheduler`: what the few-step engine uses of a diffusers one),
set up here for each frame.

Importing this module is cheap: it uses torch only through the schedulers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import torch

TimestepPolicy = Literal["lcm", "img2img"]
"""Which pipeline's timesteps an input frame gets (text-to-image always runs the full schedule):
"lcm": LCM's own img2img schedule (`set_timesteps(steps, strength=...)`), at least one step;
"img2img": the last int(steps x strength) timesteps of a `steps`-step schedule."""


class Scheduler(Protocol):
    """What the loop uses of a diffusers scheduler (LCM, Euler, Euler ancestral, ...)."""

    config: Mapping[str, Any]
    order: int
    timesteps: torch.Tensor
    init_noise_sigma: float | torch.Tensor

    def set_timesteps(self, num_inference_steps: int, device: torch.device, **kw: Any) -> None: ...
    def set_begin_index(self, begin_index: int) -> None: ...
    def scale_model_input(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor: ...
    def step(
        self,
        model_output: torch.Tensor,
        timestep: torch.Tensor,
        sample: torch.Tensor,
        *,
        generator: torch.Generator,
        return_dict: Literal[False],
    ) -> tuple[torch.Tensor, ...]: ...
    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor: ...


def set_timesteps(
    scheduler: Scheduler,
    policy: TimestepPolicy,
    steps: int,
    strength: float | None,
    device: torch.device,
) -> torch.Tensor:
    """Set `scheduler` up for one frame; return the timesteps it runs. None: text to image."""
    if strength is None:
        scheduler.set_timesteps(steps, device=device)
        return scheduler.timesteps
    if policy == "lcm":
        set_lcm_timesteps(scheduler, steps, strength, device)
        return scheduler.timesteps
    return set_img2img_timesteps(scheduler, steps, strength, device)


def set_img2img_timesteps(
    scheduler: Scheduler, steps: int, strength: float, device: torch.device
) -> torch.Tensor:
    """As StableDiffusion(XL)Img2ImgPipeline: the last int(steps x strength) of `steps` timesteps.

    Raises ValueError when that is none; the families using this policy declare
    a steps x strength constraint so that a session never gets there.
    """
    scheduler.set_timesteps(steps, device=device)
    init_timestep = min(int(steps * strength), steps)
    if init_timestep < 1:
        raise ValueError(f"strength {strength:g} x steps {steps} runs no denoising step")
    t_start = max(steps - init_timestep, 0) * scheduler.order
    scheduler.set_begin_index(t_start)
    return scheduler.timesteps[t_start:]


def set_lcm_timesteps(
    scheduler: Scheduler, steps: int, strength: float, device: torch.device
) -> None:
    """Give `scheduler` the LCM pipeline's timesteps for `steps` and `strength`, or the nearest.

    LCM draws img2img timesteps from the first int(original_inference_steps *
    strength) timesteps of its distillation schedule, and diffusers raises
    ValueError when that leaves fewer than `steps`. A strength slider dragged
    toward 0 must not fail the session, so run as many steps as exist, and at
    least one: a frame with none would bypass the model (no prompt, no noise,
    not even the VAE's look) and the output would jump between two styles as
    the slider crosses the threshold. That one step is at the schedule's
    smallest timestep, the least change LCM can make.
    """
    original_steps: int = scheduler.config["original_inference_steps"]
    available = int(original_steps * strength)
    if available >= 1:
        scheduler.set_timesteps(min(steps, available), device=device, strength=strength)
    else:
        # 1.5 / n, not 1 / n: int(n * (1 / n)) can round down to 0.
        scheduler.set_timesteps(1, device=device, strength=min(1.0, 1.5 / original_steps))
