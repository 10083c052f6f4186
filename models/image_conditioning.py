"""What images add to a frame's conditioning, as diffusers' pipelines compute it:
a reference's identity (IP-Adapter) and a control image's structure (ControlNet).

The few-step engine (`models.few_step`) batches sessions that differ in both:

- IP-Adapter: each session's reference embedding, computed once per reference
  (`ReferenceEncoder`), joins the UNet's `added_cond_kwargs`; a session without
  one gives zeros. Its `reference_scale` is its own: diffusers' IP-Adapter
  attention takes one scale per adapter, so the engine passes each sample's
  scale as a constant `ip_adapter_masks` entry (the per-region weights diffusers
  multiplies each sample's image attention by), with the adapter's scale at 1.
- ControlNet: each control (face, canny) runs its ControlNet on the samples
  that use it, with each sample's `control_scale` (the residuals are scaled per
  sample, so a tensor of scales broadcasts); samples without a control add zeros.

A sample with no reference and no control thus gets exactly the plain UNet's
output: what the image attention and the residuals add is zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.models.embeddings import ImageProjection

from frames.frame import DevicePixels, Pixels


class ReferenceEncoder:
    """A reference image's embedding for the IP-Adapter loaded into a pipeline's UNet.

    As the pipelines' `prepare_ip_adapter_image_embeds` for one image, one adapter
    and no classifier-free guidance: the CLIP image encoder's projected embedding
    for a plain adapter, its penultimate hidden states for the "plus" ones."""

    def __init__(self, pipeline: Any) -> None:
        self.image_encoder = pipeline.image_encoder
        self.feature_extractor = pipeline.feature_extractor
        [projection] = pipeline.unet.encoder_hid_proj.image_projection_layers
        self.hidden_states = not isinstance(projection, ImageProjection)
        self.encoded = 0
        """How many references it has encoded (each once, whatever the frames)."""
        self._zeros: torch.Tensor | None = None

    @staticmethod
    def of(pipeline: Any) -> ReferenceEncoder | None:
        """The encoder of the IP-Adapter `pipeline.load_ip_adapter` loaded, or None."""
        unet = pipeline.unet
        if getattr(unet.config, "encoder_hid_dim_type", None) != "ip_image_proj":
            return None
        return ReferenceEncoder(pipeline)

    def zeros(self) -> torch.Tensor:
        """What a sample without a reference gives the UNet: zeros of an embedding's shape."""
        if self._zeros is None:
            blank = np.zeros((8, 8, 3), dtype=np.uint8)
            self._zeros = torch.zeros_like(self(blank))
            self.encoded -= 1
        return self._zeros

    def __call__(self, pixels: Pixels | DevicePixels) -> torch.Tensor:
        """1 x 1 x ...: the embedding of one image for one adapter, batched on dim 0."""
        if isinstance(pixels, torch.Tensor):
            pixels = pixels.cpu().numpy()
        encoder = self.image_encoder
        image = self.feature_extractor(np.asarray(pixels), return_tensors="pt").pixel_values
        image = image.to(device=encoder.device, dtype=encoder.dtype)
        self.encoded += 1
        if self.hidden_states:
            embeds = encoder(image, output_hidden_states=True).hidden_states[-2]
        else:
            embeds = encoder(image).image_embeds
        result: torch.Tensor = embeds[None, :]
        return result


def control_tensor(
    pixels: Pixels | DevicePixels, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """A control image as the ControlNet pipelines preprocess it: 1 x 3 x H x W in [0, 1]."""
    tensor = pixels if isinstance(pixels, torch.Tensor) else torch.from_numpy(np.asarray(pixels))
    return tensor.to(device).permute(2, 0, 1)[None].to(torch.float32).div(255.0).to(dtype)


@dataclass(frozen=True, slots=True)
class ImageConditioning:
    """One sample's image conditioning in a batch (the defaults: none)."""

    reference: torch.Tensor | None = None
    """Its reference's embedding (`ReferenceEncoder`)."""
    reference_scale: float = 0.0
    control: str | None = None
    """The ControlNet it runs (by its control's name), with `control_image` ([0, 1])."""
    control_image: torch.Tensor | None = None
    control_scale: float = 0.0


def reference_inputs(
    samples: Sequence[ImageConditioning],
    zeros: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The UNet's `added_cond_kwargs` and `cross_attention_kwargs` entries for a batch on
    an IP-Adapter UNet: every sample's embedding (`zeros` without a reference) and scale."""
    image_embeds = torch.cat(
        [zeros if sample.reference is None else sample.reference for sample in samples]
    ).to(device=device, dtype=dtype)
    scales = torch.tensor(
        [sample.reference_scale if sample.reference is not None else 0.0 for sample in samples],
        device=device,
        dtype=dtype,
    )
    # batch x images (1) x 1 x 1: a constant per sample, which downsampling keeps.
    masks = scales.view(-1, 1, 1, 1)
    return {"image_embeds": [image_embeds]}, {"ip_adapter_masks": [masks]}


def control_residuals(
    controlnets: Mapping[str, Any],
    samples: Sequence[ImageConditioning],
    model_input: torch.Tensor,
    timesteps: torch.Tensor,
    prompt_embeds: torch.Tensor,
    added_cond_kwargs: Mapping[str, torch.Tensor] | None,
) -> dict[str, Any]:
    """The UNet's ControlNet residuals for a batch (`down_block_additional_residuals`,
    `mid_block_additional_residual`), or no entries when no sample has a control.

    Each control's ControlNet runs on the samples that use it, as the ControlNet
    pipelines call it: the scaled latents, the timestep, the prompt's embeddings (and
    SDXL's added conditioning), the control image, the sample's scale."""
    down: list[torch.Tensor] | None = None
    mid: torch.Tensor | None = None
    for name, controlnet in controlnets.items():
        rows = [i for i, sample in enumerate(samples) if sample.control == name]
        if not rows:
            continue
        index = torch.tensor(rows, device=model_input.device)
        images = torch.cat([samples[i].control_image for i in rows])  # type: ignore[misc]
        scales = torch.tensor([samples[i].control_scale for i in rows], dtype=model_input.dtype)
        added = None
        if added_cond_kwargs is not None:
            added = {key: value[index] for key, value in added_cond_kwargs.items()}
        down_samples, mid_sample = controlnet(
            model_input[index],
            timesteps[index],
            encoder_hidden_states=prompt_embeds[index],
            controlnet_cond=images.to(controlnet.dtype),
            # Per sample: the ControlNet multiplies each residual by it.
            conditioning_scale=scales.to(model_input.device).view(-1, 1, 1, 1),
            added_cond_kwargs=added,
            return_dict=False,
        )
        if down is None or mid is None:
            down = [
                torch.zeros((len(samples), *s.shape[1:]), dtype=s.dtype, device=s.device)
                for s in down_samples
            ]
            mid = torch.zeros(
                (len(samples), *mid_sample.shape[1:]),
                dtype=mid_sample.dtype,
                device=mid_sample.device,
            )
        for residual, sample in zip(down, down_samples, strict=True):
            residual[index] = sample
        mid[index] = mid_sample
    if down is None:
        return {}
    return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
