"""Avatar mode's speed: ms per frame with a reference and a control against plain img2img.

    .venv/bin/python -m benchmarks.avatar                   # CPU: tiny-avatar, lcm at 256x256
    .venv/bin/python -m benchmarks.avatar --device cuda --size 512 --families lcm,sdxl-turbo

For each model, in-process and driven through `FewStepModel.run` as the worker
drives it (benchmarks/models.py's timing), the table gives the median ms per
call and per frame of:

- plain: the model without avatar parts (`tiny`, or the family as it loads alone);
- none: the same model with its parts loaded, no reference and no control;
- reference: each session with its own reference image (IP-Adapter);
- control: each session with its own control image ("canny", one ControlNet);
- both: a reference and a control;

for 1 and 8 sessions per call (each its own state, prompt, seed, reference,
control image and scales: one batched UNet + ControlNet call). `tiny-avatar`
is the offline build; a family name (lcm, lcm-lora, sdxl-turbo, sd-turbo) is
its real architecture with random weights (models/random_weights.py) at
--size, with a ControlNet of the real structure (`ControlNetModel.from_unet`,
random weights; lllyasviel's canny and the face ControlNets have this
structure) and a random IP-Adapter (`save_random_ip_adapter`, loaded by
`load_ip_adapter`): its UNet part (image keys and values in every
cross-attention) has the real shapes, its CLIP image encoder is a small
random one, not the ViT-H of h94/IP-Adapter. sd-turbo has no IP-Adapter: its
reference modes are left out.

Per-session costs outside the model call, in the notes: encoding a reference
(once per reference, not per frame) and the per-frame annotator
(`frames.annotators.annotator_for`) at the model's size.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import torch

from benchmarks.models import (
    DTYPES,
    load_average,
    machine_line,
    progress,
    sessions,
    timed_call,
)
from frames.annotators import annotator_for
from frames.frame import ControlImage, Pixels
from frames.samples import gradient_image
from models.base import ModelInput
from models.families import FAMILIES
from models.few_step import FewStepModel
from models.loading import resolve_device
from models.parts import AvatarParts, ControlNetWeights
from models.random_weights import add_random_parts, build_random_pipeline
from models.tiny import TINY_AVATAR, load_tiny, load_tiny_avatar
from realtime.bench.table import markdown_table

CONTROL = "canny"
"""The control every control mode runs (one ControlNet)."""
MODES = ("plain", "none", "reference", "control", "both")
ANNOTATED = ("canny", "face")


def build_pair(
    name: str, args: argparse.Namespace
) -> tuple[FewStepModel, Callable[[], FewStepModel]]:
    """`name` without avatar parts, and a function that adds them (call it after
    measuring the plain model: the real architectures share one pipeline)."""
    if name == TINY_AVATAR.id:
        return load_tiny(args.device), lambda: load_tiny_avatar(args.device)
    family = FAMILIES[name]
    pipeline = build_random_pipeline(name, args.device, DTYPES[args.dtype])
    plain = family.from_pipeline(pipeline, family.model_info(width=args.size, height=args.size))

    def with_parts() -> FewStepModel:
        # The family's own parts (none but ControlNets for SD 2.1), random, as
        # `--random-weights --control canny --ip-adapter plain` builds them.
        ip_adapter = next(iter(family.ip_adapters), None)
        parts = AvatarParts((ControlNetWeights(CONTROL, "random", "random"),), ip_adapter)
        controlnets = add_random_parts(pipeline, parts)
        info = family.model_info(width=args.size, height=args.size, parts=parts)
        return family.from_pipeline(pipeline, info, controlnets)

    return plain, with_parts


def avatar_inputs(
    model: FewStepModel, batch: int, mode: str, args: argparse.Namespace
) -> list[ModelInput]:
    """`batch` sessions in `mode`: each its own reference, control image and scales."""
    inputs = sessions(model, batch, False, args.steps, args.strength)
    info = model.info
    for index, item in enumerate(inputs):
        params = dict(item.params)
        reference = control = None
        if mode in ("reference", "both"):
            reference = gradient_image(224, 224, seed=100 + index)
            params["reference_scale"] = 0.4 + 0.1 * index
        if mode in ("control", "both"):
            edges = np.zeros((info.height, info.width, 3), np.uint8)
            edges[:, (index * 8) % info.width :: 16] = 255
            control = ControlImage(CONTROL, edges)
            params.update(control=CONTROL, control_scale=0.5 + 0.1 * index)
        inputs[index] = replace(item, params=params, reference=reference, control=control)
    return inputs


def measure(
    name: str, model: FewStepModel, mode: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    cuda = args.device.startswith("cuda")
    rows = []
    for batch in args.batch:
        what = f"{name} {mode} batch {batch}"
        progress(f"{what}: warming up")
        inputs = avatar_inputs(model, batch, mode, args)
        for _ in range(args.warmup):  # also encodes each session's reference, once
            timed_call(model, inputs, cuda)
        samples = [timed_call(model, inputs, cuda) for _ in range(args.frames)]
        progress(f"{what}: " + ", ".join(f"{s:.0f}" for s in samples))
        p50 = statistics.median(samples)
        rows.append(
            {
                "model": name,
                "size": f"{model.info.width}x{model.info.height}",
                "dtype": args.dtype,
                "steps": args.steps,
                "mode": mode,
                "sessions": batch,
                "ms_per_call_p50": p50,
                "ms_per_frame": p50 / batch,
                "frames_per_s": 1000 * batch / p50,
                "ms_per_call_samples": samples,
            }
        )
    return rows


def median_ms(call: Callable[[], object], repeats: int, cuda: bool) -> float:
    samples = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure_model(name: str, args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    cuda = args.device.startswith("cuda")
    plain, with_parts = build_pair(name, args)
    rows = measure(name, plain, "plain", args)
    del plain
    model = with_parts()
    notes = []
    for mode in MODES[1:]:
        if model.reference_encoder is None and mode in ("reference", "both"):
            notes.append(f"{name}: no IP-Adapter, no {mode} rows")
            continue
        rows += measure(name, model, mode, args)
    encoder = model.reference_encoder
    if encoder is not None:
        reference = gradient_image(224, 224, seed=7)
        ms = median_ms(lambda: encoder(reference), args.frames + 1, cuda)
        parameters = sum(p.numel() for p in encoder.image_encoder.parameters())
        notes.append(
            f"{name}: encoding a reference (once per reference) {ms:.1f} ms, its random "
            f"CLIP image encoder has {parameters / 1e6:.2f}M parameters "
            "(h94/IP-Adapter's ViT-H/14: 632M)"
        )
    del model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return rows, notes


def annotator_notes(size: int, repeats: int) -> list[str]:
    """The per-frame cost of each annotator on a frame of `size` x `size`."""
    frame: Pixels = gradient_image(size, size, seed=3)
    notes = []
    for control in ANNOTATED:
        annotator = annotator_for(control)
        try:
            ms = median_ms(partial(annotator, frame), repeats, cuda=False)
        finally:
            annotator.close()
        what = f"{type(annotator).__module__}.{type(annotator).__name__}"
        notes.append(f"annotator {control!r} ({what}): {ms:.1f} ms per {size}x{size} frame")
    return notes


def table(rows: list[dict[str, Any]]) -> str:
    """One row per model, mode and sessions; "x plain" is its ms/frame over plain's."""
    plain = {
        (row["model"], row["sessions"]): row["ms_per_frame"]
        for row in rows
        if row["mode"] == "plain"
    }
    header = ["model", "size", "dtype", "steps", "mode", "sessions"]
    header += ["ms/call p50", "ms/frame", "frames/s", "x plain"]
    cells = [
        [
            *(row[key] for key in ("model", "size", "dtype", "steps", "mode", "sessions")),
            f"{row['ms_per_call_p50']:.0f}",
            f"{row['ms_per_frame']:.1f}",
            f"{row['frames_per_s']:.2f}",
            f"{row['ms_per_frame'] / plain[row['model'], row['sessions']]:.2f}",
        ]
        for row in rows
    ]
    return markdown_table(header, cells)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.avatar", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--families",
        default=f"{TINY_AVATAR.id},lcm",
        help=f"comma-separated: {TINY_AVATAR.id} (fp32, 256x256) and families "
        f"({', '.join(FAMILIES)}) (default: %(default)s)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--dtype", choices=list(DTYPES), help="default fp16 on cuda, fp32 on cpu")
    parser.add_argument(
        "--size", type=int, default=256, help="the families' width and height (default: 256)"
    )
    parser.add_argument("--steps", type=int, default=1, help="denoising steps (default: 1)")
    parser.add_argument(
        "--strength", type=float, default=1.0, help="img2img strength (default: 1.0)"
    )
    parser.add_argument("--batch", default="1,8", help="sessions per call (default: 1,8)")
    parser.add_argument("--frames", type=int, help="measured calls per row (cuda 20, cpu 2)")
    parser.add_argument("--warmup", type=int, help="warm-up calls per row (cuda 3, cpu 1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    args.device = resolve_device(args.device)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    args.dtype = args.dtype or ("fp16" if cuda else "fp32")
    args.frames = args.frames or (20 if cuda else 2)
    args.warmup = (3 if cuda else 1) if args.warmup is None else args.warmup
    args.families = [name.strip() for name in args.families.split(",") if name.strip()]
    unknown = [name for name in args.families if name not in (*FAMILIES, TINY_AVATAR.id)]
    if unknown:
        parser.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}, tiny-avatar")
    if TINY_AVATAR.id in args.families and args.dtype != "fp32":
        parser.error(f"{TINY_AVATAR.id} runs in fp32 only (--dtype {args.dtype})")
    try:
        args.batch = [int(size) for size in args.batch.split(",")]
    except ValueError as error:
        parser.error(f"--batch takes comma-separated integers: {error}")
    if min(args.batch) < 1 or args.steps < 1 or args.frames < 1 or args.warmup < 0:
        parser.error("--batch, --steps and --frames must be >= 1, --warmup >= 0")
    if args.size < 64 or args.size % 8:
        parser.error("--size must be a multiple of 8, at least 64")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    load_before = load_average()
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for name in args.families:
        model_rows, model_notes = measure_model(name, args)
        rows += model_rows
        notes += model_notes
    notes += annotator_notes(args.size, args.frames + 1)
    notes.append(f"1-minute load average: {load_before} before, {load_average()} after")
    settings = (
        f"{args.device}, {args.dtype}, steps {args.steps}, strength {args.strength:g}, "
        f"{args.warmup} warm-up + {args.frames} measured calls per row"
    )
    machine = machine_line(args.device)
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
