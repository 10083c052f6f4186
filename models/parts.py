"""What a diffusion family can add to its UNet for avatars and structure control.

- A ControlNet per control signal (`frames/annotators.py` computes the signal
  from each camera frame: face landmarks, edges): it keeps the frame's pose and
  layout while the prompt changes the look.
- An IP-Adapter with its CLIP image encoder: a reference image's identity
  (a face, a character) conditions every output.

A family declares which exist for it (`Family.controlnets`, `Family.ip_adapters`),
with where their weights are and under which licence; `AvatarParts` is what one
server loads (`realtime serve --control face --ip-adapter plus-face`). Importing
this module is cheap and torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.params import ParamSpec

NO_CONTROL = "none"


@dataclass(frozen=True, slots=True)
class ControlNetWeights:
    """A ControlNet trained on one control signal, for one family's UNet."""

    control: str
    """The signal it takes, by its annotator's name (frames/annotators.py): "face", "canny"."""
    source: str
    """A hub id or a folder saved with `save_pretrained`."""
    licence: str
    subfolder: str | None = None
    """Where in `source` its diffusers config and weights are, if not at the top."""
    variant: str | None = None
    """Its weights' variant (from_pretrained's `variant`): "fp16" where the repository
    has safetensors only as diffusion_pytorch_model.fp16.safetensors."""

    @property
    def weight_name(self) -> str:
        """The safetensors file from_pretrained reads, in `subfolder`."""
        return f"diffusion_pytorch_model{f'.{self.variant}' if self.variant else ''}.safetensors"


@dataclass(frozen=True, slots=True)
class IpAdapterWeights:
    """IP-Adapter weights and their image encoder, as diffusers' `load_ip_adapter` takes them."""

    name: str
    """What `--ip-adapter` calls it: "plain", "plus-face"."""
    source: str
    """A hub id or a folder holding the weights (h94/IP-Adapter's layout)."""
    subfolder: str
    weight_name: str
    image_encoder_folder: str
    """The CLIP image encoder's folder, relative to `source` (load_ip_adapter's
    `image_encoder_folder`, as a path from the repository's top)."""
    licence: str


@dataclass(frozen=True, slots=True)
class AvatarParts:
    """The ControlNets and IP-Adapter one model is loaded with (none by default)."""

    controlnets: tuple[ControlNetWeights, ...] = ()
    ip_adapter: IpAdapterWeights | None = None

    @property
    def controls(self) -> tuple[str, ...]:
        return tuple(controlnet.control for controlnet in self.controlnets)

    def __bool__(self) -> bool:
        return bool(self.controlnets) or self.ip_adapter is not None

    def params(self) -> tuple[ParamSpec, ...]:
        """The params a model with these parts takes besides its family's."""
        params: list[ParamSpec] = []
        if self.controlnets:
            params += [
                ParamSpec(
                    "control",
                    str,
                    NO_CONTROL,
                    "The structure each output keeps from its camera frame: face landmarks,"
                    " edges (canny), ...; none for plain img2img.",
                    choices=(NO_CONTROL, *self.controls),
                ),
                ParamSpec(
                    "control_scale",
                    float,
                    0.8,
                    "How strongly the control holds the structure; 0 lets go.",
                    minimum=0.0,
                    maximum=2.0,
                ),
            ]
        if self.ip_adapter is not None:
            params.append(
                ParamSpec(
                    "reference_scale",
                    float,
                    0.6,
                    "How strongly the reference image (PUT /v1/sessions/{id}/reference) shapes"
                    " each output; 0 ignores it.",
                    minimum=0.0,
                    maximum=1.5,
                )
            )
        return tuple(params)
