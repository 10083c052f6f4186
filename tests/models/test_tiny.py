"""The tiny model end to end: built offline, loaded through from_pretrained, run per frame."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_img2img import (
    LatentConsistencyModelImg2ImgPipeline,
)
from PIL import Image

from frames.frame import Pixels
from models.base import Model, ModelInput
from models.few_step import FewStepModel
from models.loading import ModelLoadError, load_pipeline, resolve_device
from models.params import ParamValue
from models.tiny import TINY, build_tiny_pipeline, load_tiny


@pytest.fixture(scope="module")
def model(tiny_folder: Path) -> FewStepModel:
    return load_tiny("cpu", tiny_folder)


@pytest.fixture(scope="module")
def pipeline(tiny_folder: Path) -> LatentConsistencyModelImg2ImgPipeline:
    loaded = load_pipeline(
        LatentConsistencyModelImg2ImgPipeline,
        str(tiny_folder),
        device="cpu",
        dtype=torch.float32,
        requires_safety_checker=False,
    )
    # diffusers leaves set_progress_bar_config unannotated.
    loaded.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
    return loaded


@pytest.fixture(scope="module")
def image() -> Pixels:
    """A gradient with two flat shapes, like a scene with a face and a shirt."""
    y, x = np.mgrid[0:256, 0:256]
    pixels = np.stack([x, y, (x + y) // 2], axis=-1).astype(np.uint8)
    pixels[64:192, 64:192] = (200, 40, 40)
    pixels[100:150, 30:230] = (20, 60, 220)
    return pixels


def params(**changes: ParamValue) -> dict[str, ParamValue]:
    return {**TINY.default_params, **changes}


def run(
    model: FewStepModel,
    pixels: Pixels,
    state: dict[str, Any] | None = None,
    /,
    **changes: ParamValue,
) -> Pixels:
    [output] = model.run([ModelInput(pixels, params(**changes), {} if state is None else state)])
    return output


def mean_difference(a: Pixels, b: Pixels) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_weights_folder_is_built_under_realtime_cache(tiny_folder: Path, model_cache: Path) -> None:
    assert tiny_folder == model_cache / "tiny-v1"
    index = json.loads((tiny_folder / "model_index.json").read_text())
    assert index["_class_name"] == "LatentConsistencyModelImg2ImgPipeline"
    assert index["vae"] == ["diffusers", "AutoencoderTiny"]
    assert (tiny_folder / "tokenizer" / "vocab.json").is_file()
    assert not [p for p in model_cache.iterdir() if p.name.startswith(".tiny-v1.")]


def test_build_is_deterministic_and_keeps_an_existing_folder(
    tiny_folder: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "tiny"
    build_tiny_pipeline(folder)
    weights = sorted(p.relative_to(folder) for p in folder.rglob("*.safetensors"))
    assert weights
    for path in weights:
        assert (folder / path).read_bytes() == (tiny_folder / path).read_bytes()
    # As when another process finished first: its folder stays, ours is discarded.
    build_tiny_pipeline(folder)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_load_goes_through_from_pretrained(
    tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = []
    original = LatentConsistencyModelImg2ImgPipeline.from_pretrained.__func__  # type: ignore[attr-defined]

    def spy(cls: type, /, source: str, **kwargs: Any) -> Any:
        sources.append(source)
        return original(cls, source, **kwargs)

    monkeypatch.setattr(LatentConsistencyModelImg2ImgPipeline, "from_pretrained", classmethod(spy))
    loaded: Model = load_tiny("cpu", tiny_folder)
    assert sources == [str(tiny_folder)]
    assert loaded.info is TINY


def test_info_declares_the_params() -> None:
    assert (TINY.id, TINY.kind, TINY.width, TINY.height) == ("tiny", "img2img", 256, 256)
    assert params() == {
        "prompt": TINY.default_params["prompt"],
        "strength": 0.5,
        "steps": 2,
        "seed": 0,
        "guidance_scale": 1.0,
        "stability": 0.0,
    }


def test_output_is_an_image_of_the_input_size(model: FewStepModel, image: Pixels) -> None:
    model.warmup()
    output = run(model, image)
    assert output.shape == (256, 256, 3)
    assert output.dtype == np.uint8
    assert output.std() > 20, "a visible pattern, not a flat grey"


def test_batch_outputs_follow_inputs(model: FewStepModel, image: Pixels) -> None:
    flipped = np.ascontiguousarray(image[::-1])
    outputs = model.run([ModelInput(image, params()), ModelInput(flipped, params())])
    # Both go through each UNet call together: float rounding may move a level by one.
    for output, alone in zip(outputs, (run(model, image), run(model, flipped)), strict=True):
        assert np.abs(output.astype(np.int16) - alone).max() <= 1


def test_same_input_and_params_give_the_same_output(model: FewStepModel, image: Pixels) -> None:
    state: dict[str, Any] = {}
    first = run(model, image, state, steps=4)
    np.testing.assert_array_equal(run(model, image, state, steps=4), first)
    np.testing.assert_array_equal(run(model, image, {}, steps=4), first)


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "neon city at night, cyberpunk"},
        {"strength": 0.8},
        {"seed": 1},
        {"guidance_scale": 6.0},
        {"steps": 4},
    ],
    ids=lambda change: next(iter(change)),
)
def test_each_param_changes_the_output(
    model: FewStepModel, image: Pixels, change: dict[str, ParamValue]
) -> None:
    assert mean_difference(run(model, image, **change), run(model, image)) > 4


def test_prompt_is_encoded_once_per_change(model: FewStepModel, image: Pixels) -> None:
    state: dict[str, Any] = {}
    run(model, image, state)
    conditioning = state["prompt"][1]
    run(model, image, state, seed=3)
    assert state["prompt"][1] is conditioning
    run(model, image, state, prompt="a forest")
    assert state["prompt"][1] is not conditioning


@pytest.mark.parametrize(("strength", "steps"), [(0.0, 2), (0.01, 1), (0.1, 8)])
def test_strengths_too_low_for_the_steps_still_run(
    model: FewStepModel, image: Pixels, strength: float, steps: int
) -> None:
    # diffusers' pipeline raises ValueError here; a session must keep streaming.
    output = run(model, image, strength=strength, steps=steps)
    assert mean_difference(output, image) < 40, "close to the input: the least change"


@pytest.mark.parametrize(
    ("strength", "steps", "guidance_scale", "seed"),
    [(0.5, 2, 1.0, 0), (0.8, 4, 3.5, 7), (1.0, 1, 8.0, 2**32 - 1)],
)
def test_fast_path_matches_the_diffusers_pipeline(
    model: FewStepModel,
    pipeline: LatentConsistencyModelImg2ImgPipeline,
    image: Pixels,
    strength: float,
    steps: int,
    guidance_scale: float,
    seed: int,
) -> None:
    prompt = "a lighthouse in a storm"
    expected = pipeline(
        prompt=prompt,
        image=Image.fromarray(image),
        num_inference_steps=steps,
        strength=strength,
        guidance_scale=guidance_scale,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
    ).images[0]
    changes: dict[str, ParamValue] = {
        "prompt": prompt,
        "strength": strength,
        "steps": steps,
        "guidance_scale": guidance_scale,
        "seed": seed,
    }
    [decoded] = model.generate([ModelInput(image, params(**changes))])
    actual = (decoded[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=0)
    pixels = run(model, image, **changes)
    assert np.abs(pixels.astype(int) - np.round(expected * 255)).max() <= 1


def test_resolve_device() -> None:
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert [resolve_device(d) for d in ("cpu", "cuda", "cuda:1")] == ["cpu", "cuda", "cuda:1"]
    with pytest.raises(ValueError, match="'gpu'"):
        resolve_device("gpu")


def test_missing_folder_raises_model_load_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no such folder") as raised:
        load_pipeline(
            LatentConsistencyModelImg2ImgPipeline, str(missing), device="cpu", dtype=torch.float32
        )
    assert str(missing) in str(raised.value)
    assert "save_pretrained" in str(raised.value)


def test_uncached_hub_id_offline_raises_model_load_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError) as raised:
        load_pipeline(
            LatentConsistencyModelImg2ImgPipeline,
            "realtime-tests/no-such-model",
            device="cpu",
            dtype=torch.float32,
        )
    message = str(raised.value)
    assert message.startswith("cannot load model realtime-tests/no-such-model: ")
    assert "realtime pull realtime-tests/no-such-model" in message
    assert "HF_HOME" in message


def test_run_on_device_gives_the_pixels_of_run_as_a_tensor_from_a_tensor(
    model: FewStepModel, image: Pixels
) -> None:
    # What the worker does with a codec on the model's device (frames/device_codec.py):
    # a uint8 H x W x 3 tensor in, the same kind out, no host arrays.
    [on_device] = model.run_on_device([ModelInput(torch.from_numpy(image), params(), {})])
    assert on_device.dtype == torch.uint8 and on_device.device == model.device
    assert on_device.shape == (256, 256, 3)
    np.testing.assert_array_equal(on_device.numpy(), run(model, image))


def test_stability_reduces_the_flicker_of_a_still_noisy_camera(
    model: FewStepModel, image: Pixels
) -> None:
    """A still camera: the same scene with fresh sensor noise in every frame."""
    noise = np.random.default_rng(0)

    def camera() -> Pixels:
        noisy = image.astype(float) + noise.normal(0, 6, image.shape)
        pixels: Pixels = np.clip(noisy, 0, 255).round().astype(np.uint8)
        return pixels

    frames = [camera() for _ in range(6)]

    def flicker(stability: float) -> float:
        state: dict[str, Any] = {}
        outputs = [run(model, frame, state, stability=stability) for frame in frames]
        return float(np.mean([mean_difference(a, b) for a, b in itertools.pairwise(outputs)]))

    still, steady = flicker(0.0), flicker(0.6)
    assert steady < 0.8 * still, (steady, still)
