"""Flicker: how much consecutive outputs of a still, sensor-noisy camera differ, by `stability`.

    .venv/bin/python -m benchmarks.flicker                      # tiny, tiny-avatar; CPU
    .venv/bin/python -m benchmarks.flicker --frames 60 --stability 0,0.3,0.6,0.9

A still camera at a fixed seed gives equal outputs for equal inputs (the
engine's noise is seeded per session), so a still scene flickers only through
the sensor: each frame here is one fixed image plus fresh Gaussian noise
(--sigma levels), as a webcam's is. One session (one `ModelInput` state,
reused) runs --frames consecutive frames at each stability (the share of the
previous output's latent mixed into the next frame's). Per stability:

- flicker: the mean absolute change between consecutive outputs, in levels
  (0-255), over every pixel and channel (the input's own is the first row);
- bias: the mean absolute distance of the outputs from the stability-0 output
  of the noise-free image, in levels: what the noise and the carried latent
  move the picture by (a still scene has no motion to lag behind; the carried
  latent's cost under motion is lag).

`tiny-avatar` runs with a reference image (the IP-Adapter) and no control.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.models import load_average, machine_line, progress
from frames.frame import Pixels
from frames.samples import gradient_image
from models.base import ModelInput
from models.few_step import FewStepModel
from models.tiny import TINY, TINY_AVATAR, load_tiny, load_tiny_avatar
from realtime.bench.table import markdown_table

LOADERS = {TINY.id: load_tiny, TINY_AVATAR.id: load_tiny_avatar}
INPUT = "input"
"""The first row's model: the noisy camera itself."""


def camera(still: Pixels, frames: int, sigma: float, seed: int) -> list[Pixels]:
    """`frames` frames of a still camera: `still` plus fresh Gaussian noise each."""
    rng = np.random.default_rng(seed)
    return [
        (still + rng.normal(0.0, sigma, still.shape)).round().clip(0, 255).astype(np.uint8)
        for _ in range(frames)
    ]


def flicker(outputs: Sequence[Pixels]) -> float:
    """The mean absolute change between consecutive images, in levels."""
    return float(
        np.mean([np.abs(b.astype(np.float32) - a).mean() for a, b in itertools.pairwise(outputs)])
    )


def distance(outputs: Sequence[Pixels], target: Pixels) -> float:
    """The mean absolute distance of `outputs` from `target`, in levels."""
    return float(np.mean([np.abs(out.astype(np.float32) - target).mean() for out in outputs]))


def measure_model(
    name: str, noisy: Sequence[Pixels], still: Pixels, args: argparse.Namespace
) -> list[dict[str, Any]]:
    model: FewStepModel = LOADERS[name]("cpu")
    params = dict(model.info.default_params)
    reference = gradient_image(224, 224, seed=1) if model.info.takes_reference else None

    def run(pixels: Pixels, stability: float, state: dict[str, Any]) -> Pixels:
        values = {**params, "stability": stability}
        [output] = model.run([ModelInput(pixels, values, state, reference)])
        return output

    clean = run(still, 0.0, {})
    rows = []
    for stability in args.stability:
        progress(f"{name} stability {stability}: {len(noisy)} frames")
        state: dict[str, Any] = {}
        outputs = [run(pixels, stability, state) for pixels in noisy]
        rows.append(
            {
                "model": name,
                "stability": stability,
                "frames": len(outputs),
                "flicker": flicker(outputs),
                "bias": distance(outputs, clean),
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    header = ["model", "stability", "frames", "flicker (levels)", "bias (levels)"]
    cells = [
        [
            row["model"],
            "-" if row["stability"] is None else f"{row['stability']:g}",
            row["frames"],
            f"{row['flicker']:.2f}",
            f"{row['bias']:.2f}",
        ]
        for row in rows
    ]
    return markdown_table(header, cells)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.flicker", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--models",
        default=",".join(LOADERS),
        help=f"comma-separated, of {', '.join(LOADERS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--stability",
        default="0,0.3,0.6,0.9",
        help="comma-separated stabilities (default: %(default)s)",
    )
    parser.add_argument(
        "--frames", type=int, default=30, help="consecutive frames each (default: 30)"
    )
    parser.add_argument(
        "--sigma", type=float, default=4.0, help="sensor noise, in levels (default: 4)"
    )
    parser.add_argument("--seed", type=int, default=0, help="of the noise (default: 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in args.models if name not in LOADERS]
    if unknown:
        parser.error(f"unknown models {unknown}; known: {', '.join(LOADERS)}")
    try:
        args.stability = [float(value) for value in args.stability.split(",")]
    except ValueError as error:
        parser.error(f"--stability takes comma-separated numbers: {error}")
    if not all(0 <= value <= 0.95 for value in args.stability):
        parser.error("--stability values must be in [0, 0.95] (the param's range)")
    if args.frames < 2 or args.sigma < 0:
        parser.error("--frames must be >= 2, --sigma >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    load_before = load_average()
    size = TINY.width
    still = gradient_image(size, size, seed=2)
    noisy = camera(still, args.frames, args.sigma, args.seed)
    rows: list[dict[str, Any]] = [
        {
            "model": INPUT,
            "stability": None,
            "frames": len(noisy),
            "flicker": flicker(noisy),
            "bias": distance(noisy, still),
        }
    ]
    for name in args.models:
        rows += measure_model(name, noisy, still, args)
    settings = (
        f"cpu, fp32, {size}x{size} gradient image + Gaussian noise sigma {args.sigma:g} "
        f"levels per frame (seed {args.seed}); the models' default params "
        f"(tiny: steps 2, strength 0.5, fixed seed)"
    )
    notes = [f"1-minute load average: {load_before} before, {load_average()} after"]
    machine = machine_line("cpu")
    if args.json:
        document = {"machine": machine, "settings": settings, "rows": rows, "notes": notes}
        print(json.dumps(document, indent=2))
        return
    print(f"Machine: {machine}")
    print(f"Settings: {settings}\n")
    print(table(rows))
    print()
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
