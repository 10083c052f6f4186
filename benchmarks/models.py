"""Model speed: ms per frame of each diffusion family, in-process, with random weights.

    .venv/bin/python -m benchmarks.models                     # every family, default device
    .venv/bin/python -m benchmarks.models --device cuda --dtype fp16 --batch 1,2,4,8 --compile
    .venv/bin/python -m benchmarks.models --families tiny --steps 1,4   # seconds, CPU

Each family (sd-turbo, sdxl-turbo, lcm, lcm-lora) is built at its native size
with its real architecture and random weights, as `realtime serve
--random-weights` builds it (build_random_pipeline + the family's
from_pipeline), and driven through `FewStepModel.run` as the worker drives it;
no server, no codecs. A batch of N is N sessions' frames in one `run` call,
each session with its own state, prompt and seed (cross-session batching).
Each configuration gets warm-up calls, then --frames measured calls; the table
gives the median ms per call, ms per frame (per call / N) and frames/s.
Families run one at a time, largest (sdxl-turbo) last, each freed before the
next is built. `--families tiny` measures the `tiny` model (fp32, 256x256) the same
way: the CPU path that benchmarks/gpu.sh --cpu and its test run.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.base import ModelInput
from models.families import FAMILIES
from models.few_step import FewStepModel
from models.loading import resolve_device
from models.random_weights import build_random_pipeline
from models.registry import random_weights_entry
from models.tiny import load_tiny
from realtime.bench.table import markdown_table

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ORDER = tuple(sorted(FAMILIES, key=lambda name: FAMILIES[name].parameters))
"""Default order: smallest first (`Family.parameters`), sdxl-turbo (2.6B-parameter UNet) last."""
TINY = "tiny"
"""Not a family: the tiny model, built offline, fp32 only; the quick CPU check."""

REFERENCE = (
    "Reference, published, not measured here: StreamDiffusion reports 93.9 fps img2img "
    "with SD-Turbo, 1 step, 512x512, on an RTX 4090 with TensorRT (10.6 ms/frame)."
)


def machine_line(device: str) -> str:
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        memory = torch.cuda.get_device_properties(index).total_memory / 2**30
        what = f"{torch.cuda.get_device_name(index)}, {memory:.0f} GiB"
        what += f", CUDA {torch.version.cuda}"
    else:
        what = f"{_cpu_model()}, {os.cpu_count()} vCPU, {_memory_gib():.0f} GiB, no GPU used"
        what += f", {torch.get_num_threads()} torch threads"
    return f"{what}; torch {torch.__version__}; {datetime.date.today().isoformat()}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _rss_gib() -> float:
    """The process's resident memory now (Linux), NaN where unknown."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**30


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def build(name: str, device: str, dtype: torch.dtype) -> FewStepModel:
    """`name`'s real architecture with random weights, wrapped as `--random-weights` wraps it
    (the tiny model as `realtime serve --model tiny` loads it)."""
    if name == TINY:
        return load_tiny(device)
    family = FAMILIES[name]
    model = family.from_pipeline(
        build_random_pipeline(name, device, dtype), random_weights_entry(family, name).info
    )
    assert isinstance(model, FewStepModel), type(model)
    return model


def unet_calls(model: FewStepModel, steps: int, strength: float | None) -> int:
    """UNet calls per frame: the timesteps the engine gives a session's scheduler."""
    scheduler = model.scheduler_class.from_config(model.scheduler_config)
    return len(model._set_timesteps(scheduler, steps, strength))


def sessions(
    model: FewStepModel, batch: int, text_to_image: bool, steps: int, strength: float
) -> list[ModelInput]:
    """`batch` sessions' inputs: each its own state, prompt, seed and input image."""
    info = model.info
    rng = np.random.default_rng(0)
    inputs = []
    for index in range(batch):
        params = dict(info.default_params)
        params.update(
            prompt=f"{params['prompt']}, session {index}",
            seed=index,
            steps=steps,
            strength=strength,
        )
        pixels = None
        if not text_to_image:
            pixels = rng.integers(0, 256, (info.height, info.width, 3), dtype=np.uint8)
        inputs.append(ModelInput(pixels, params, {}))
    return inputs


def timed_call(model: FewStepModel, inputs: Sequence[ModelInput], cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    outputs = model.run(inputs)
    if cuda:
        torch.cuda.synchronize()
    elapsed = (time.perf_counter() - started) * 1000
    info = model.info
    assert len(outputs) == len(inputs), (len(outputs), len(inputs))
    assert all(out.shape == (info.height, info.width, 3) for out in outputs)
    return elapsed


def measure_family(name: str, args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    cuda = args.device.startswith("cuda")
    dtype_name = args.dtype
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model = build(name, args.device, DTYPES[dtype_name])
    build_s = time.perf_counter() - started
    modules = [
        module
        for module in (model.unet, model.vae, *_text_encoders(model))
        if isinstance(module, torch.nn.Module)
    ]
    unet_params = sum(p.numel() for p in model.unet.parameters())
    all_params = sum(p.numel() for module in modules for p in module.parameters())
    weights_gib = sum(
        p.numel() * p.element_size() for module in modules for p in module.parameters()
    )
    if args.compile:
        model.compile(args.compile_backend)  # inductor: as `realtime serve --compile` does
    rows = []
    modes = ["img2img", "txt2img"] if args.mode == "both" else [args.mode]
    for mode in modes:
        text_to_image = mode == "txt2img"
        for steps, batch in itertools.product(args.steps, args.batch):
            calls = unet_calls(model, steps, None if text_to_image else args.strength)
            what = f"{name} {mode} steps {steps} batch {batch}"
            progress(f"{what}: warming up")
            inputs = sessions(model, batch, text_to_image, steps, args.strength)
            warmup = [timed_call(model, inputs, cuda) for _ in range(args.warmup)]
            samples = [timed_call(model, inputs, cuda) for _ in range(args.frames)]
            p50 = statistics.median(samples)
            progress(f"{what}: " + ", ".join(f"{s:.0f}" for s in samples))
            rows.append(
                {
                    "family": name,
                    "mode": mode,
                    "size": f"{model.info.width}x{model.info.height}",
                    "dtype": dtype_name,
                    "steps": steps,
                    "strength": None if text_to_image else args.strength,
                    "unet_calls": calls,
                    "batch": batch,
                    "compiled": args.compile,
                    "compile_backend": args.compile_backend if args.compile else None,
                    "ms_per_call_p50": p50,
                    "ms_per_frame": p50 / batch,
                    "frames_per_s": 1000 * batch / p50,
                    "ms_per_call_samples": samples,
                    "warmup_ms": warmup,
                }
            )
    peak = (
        f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        if cuda
        else f"process RSS {_rss_gib():.1f} GiB"
    )
    note = (
        f"{name}: built in {build_s:.0f} s; UNet {unet_params / 1e6:.0f}M parameters, "
        f"{all_params / 1e6:.0f}M with text encoder(s) and tiny VAE, "
        f"{weights_gib / 2**30:.1f} GiB of weights in {dtype_name}; {peak}"
    )
    if args.compile:
        note += f"; UNet compiled ({args.compile_backend})"
        first = [row["warmup_ms"][0] for row in rows if row["warmup_ms"]]
        if first:
            note += f"; first (compiling) call {max(first) / 1000:.0f} s at most"
    del model, modules
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return rows, note


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _text_encoders(model: FewStepModel) -> tuple[Any, ...]:
    encoder = model.prompt_encoder
    if hasattr(encoder, "text_encoders"):
        return tuple(encoder.text_encoders)
    return (getattr(encoder, "text_encoder", None),)


def table(rows: list[dict[str, Any]]) -> str:
    header = ["family", "mode", "size", "dtype", "steps", "UNet calls/frame", "batch"]
    header += ["ms/call p50", "ms/frame", "frames/s"]
    plain = ("family", "mode", "size", "dtype", "steps", "unet_calls", "batch")
    cells = [
        [
            *(row[key] for key in plain),
            f"{row['ms_per_call_p50']:.0f}",
            f"{row['ms_per_frame']:.0f}",
            f"{row['frames_per_s']:.2f}",
        ]
        for row in rows
    ]
    return markdown_table(header, cells)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.models", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--families",
        default="all",
        help=f"comma-separated, or all ({', '.join(ORDER)}), or {TINY} (the tiny model, "
        "fp32); run in this order",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda or cuda:N; auto: cuda if any")
    parser.add_argument("--dtype", choices=list(DTYPES), help="default fp16 on cuda, fp32 on cpu")
    parser.add_argument(
        "--steps", default="1", help="comma-separated denoising steps, e.g. 1,4 (default 1)"
    )
    parser.add_argument(
        "--strength",
        type=float,
        default=1.0,
        help="img2img strength; with steps x strength >= 1 each frame runs int(steps x "
        "strength) UNet calls (lcm: min(steps, int(50 x strength)), at least 1)",
    )
    parser.add_argument("--frames", type=int, help="measured calls per configuration")
    parser.add_argument("--warmup", type=int, help="warm-up calls per configuration")
    parser.add_argument(
        "--batch", default="1", help="comma-separated sessions per call, e.g. 1,2,4,8"
    )
    parser.add_argument("--mode", choices=["img2img", "txt2img", "both"], default="img2img")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    parser.add_argument(
        "--compile-backend",
        choices=["inductor", "eager"],
        default="inductor",
        help="with --compile: inductor, as the server compiles; eager traces only, a quick "
        "check of the path on a CPU (default inductor)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    args.device = resolve_device(args.device)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if args.dtype is None:
        args.dtype = "fp16" if cuda else "fp32"
    if args.frames is None:
        args.frames = 20 if cuda else 3
    if args.warmup is None:
        args.warmup = 2 if (cuda or args.compile) else 1
    if args.families == "all":
        args.families = list(ORDER)
    else:
        args.families = [name.strip() for name in args.families.split(",") if name.strip()]
        unknown = [name for name in args.families if name not in (*FAMILIES, TINY)]
        if unknown:
            parser.error(f"unknown families {unknown}; known: {', '.join(ORDER)}, {TINY}")
        if TINY in args.families and args.dtype != "fp32":
            parser.error(f"{TINY} runs in fp32 only (--dtype {args.dtype})")
    try:
        args.batch = [int(size) for size in args.batch.split(",")]
        args.steps = [int(steps) for steps in args.steps.split(",")]
    except ValueError as error:
        parser.error(f"--batch and --steps take comma-separated integers: {error}")
    if min(args.batch) < 1 or min(args.steps) < 1 or args.frames < 1 or args.warmup < 0:
        parser.error("--batch, --steps and --frames must be >= 1, --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    machine = machine_line(args.device)
    load_before = load_average()
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for name in args.families:
        family_rows, note = measure_family(name, args)
        rows += family_rows
        notes.append(note)
    # Other processes on the machine slow every number; the load average shows them.
    notes.append(f"1-minute load average: {load_before} before, {load_average()} after")
    settings = (
        f"{args.device}, {args.dtype}, steps {','.join(map(str, args.steps))}, "
        f"strength {args.strength:g} (img2img), "
        f"{args.warmup} warm-up + {args.frames} measured calls per row"
        + (
            f", UNet torch.compile {args.compile_backend} (FewStepModel.compile)"
            if args.compile
            else ""
        )
    )
    if args.json:
        document = {
            "machine": machine,
            "settings": settings,
            "rows": rows,
            "notes": notes,
            "reference": REFERENCE,
        }
        print(json.dumps(document, indent=2))
        return
    print(f"Machine: {machine}")
    print(f"Settings: {settings}\n")
    print(table(rows))
    print()
    for note in notes:
        print(f"- {note}")
    print(f"- {REFERENCE}")


if __name__ == "__main__":
    main()
