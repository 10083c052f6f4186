"""Argument types of the `realtime` command: each refuses a bad value with a message
that says what it takes."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from realtime.server import origins


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def web_origin(text: str) -> str:
    try:
        return origins.web_origin(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def devices(text: str) -> tuple[str, ...]:
    """A comma-separated list of devices: auto, cpu, cuda or cuda:N (repeats allowed)."""
    named = tuple(device.strip() for device in text.split(","))
    for device in named:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
            raise argparse.ArgumentTypeError(
                f"must be auto, cpu, cuda or cuda:N, comma-separated, got {device!r}"
            )
    return named


def fal_app(text: str) -> tuple[str, str]:
    """APP=MODEL: a fal app id (owner/alias[/subpath]) and the model serving it."""
    app, _, model = text.partition("=")
    parts = app.split("/")
    if not model or len(parts) < 2 or not all(parts) or parts[-1] == "realtime":
        raise argparse.ArgumentTypeError(
            f"must be APP=MODEL with APP as owner/alias[/subpath] (without /realtime),"
            f" e.g. fal-ai/fast-turbo-diffusion/image-to-image=invert, got {text}"
        )
    return app, model


def seconds_or_never(text: str) -> float | None:
    """Seconds; 0 means never (None)."""
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (never) or more, got {text}")
    return value or None


def size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        pixels = int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be WIDTHxHEIGHT, e.g. 512x512, got {text}"
        ) from None
    if min(pixels) < 16 or max(pixels) > 4096:
        raise argparse.ArgumentTypeError(f"each side must be 16 to 4096 pixels, got {text}")
    return pixels


def quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 1 to 100, got {value}")
    return value


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, e.g. {"delay_ms": 50}')
    return value


def add_part_options(group: argparse._ActionsContainer) -> None:
    """`--control` and `--ip-adapter`: the avatar parts (models/parts.py), for `serve`
    and `pull` alike."""
    group.add_argument(
        "--control",
        action="append",
        default=[],
        dest="controls",
        metavar="NAME",
        help="load the model's ControlNet for this control signal (face, canny: "
        "`realtime models` lists each model's); repeatable (default: none)",
    )
    group.add_argument(
        "--ip-adapter",
        metavar="NAME",
        help="load the model's IP-Adapter for reference images (plain, plus-face); "
        "none exists for sd-turbo (SD 2.1) (default: none)",
    )
