"""One table from the stages of benchmarks/gpu.sh: each stage's JSON, in the order given.

    python -m benchmarks.gpu RESULTS/models-sd-turbo.json ... RESULTS/e2e-8.json
    python -m benchmarks.gpu --json RESULTS/*.json   # all of them as one JSON document
    python -m benchmarks.gpu --missing               # the requirements not installed

A `benchmarks.models --json` document gives a row per (steps, batch) it measured;
a `realtime bench --json` report gives one end-to-end row (sessions through the
real server). A file that is missing or empty (its stage failed) gives no row.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from realtime.bench.table import markdown_table

HEADER = [
    "stage",
    "model",
    "size",
    "dtype",
    "steps",
    "batch / sessions",
    "compile",
    "ms/frame",
    "frames/s",
    "latency p50 / p99 ms",
]


def rows(stage: str, document: dict[str, Any]) -> Iterator[list[str]]:
    if "rows" in document:  # benchmarks.models
        for row in document["rows"]:
            yield [
                stage,
                row["family"],
                row["size"],
                row["dtype"],
                str(row["steps"]),
                str(row["batch"]),
                row.get("compile_backend") or "no",
                f"{row['ms_per_frame']:.1f}",
                f"{row['frames_per_s']:.1f}",
                "",
            ]
    else:  # realtime bench: the model's own steps; frames/s is every session's together
        latency = document["latency"]
        yield [
            stage,
            f"{document['model']} ({document['transport']}, {document['fps']:g} fps cameras)",
            f"{document['width']}x{document['height']}",
            "",
            "model's default",
            str(document["sessions"]),
            "no",
            "",
            f"{document['aggregate_fps']:.1f}",
            f"{latency['p50_ms']:.0f} / {latency['p99_ms']:.0f}" if latency else "none",
        ]


def report(paths: Sequence[Path]) -> str:
    cells: list[list[str]] = []
    machine = reference = None
    for path in paths:
        if not _ran(path):
            continue
        document = orjson.loads(path.read_bytes())
        machine = machine or document.get("machine")
        reference = reference or document.get("reference")
        cells += rows(path.stem, document)
    lines = [f"Machine: {machine or 'unknown (no model stage ran)'}", ""]
    lines.append(markdown_table(HEADER, cells))
    if reference:
        lines += ["", f"- {reference}"]
    return "\n".join(lines)


def merged(paths: Sequence[Path]) -> bytes:
    """Every stage's document, by stage name, for keeping the raw samples."""
    return orjson.dumps(
        {path.stem: orjson.loads(path.read_bytes()) for path in paths if _ran(path)},
        option=orjson.OPT_INDENT_2,
    )


def _ran(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def missing_requirements(pyproject: Path = Path("pyproject.toml")) -> list[str]:
    """pyproject.toml's runtime requirements that no installed version meets: read from
    the metadata, importing nothing (torch takes seconds)."""
    from packaging.requirements import Requirement

    from benchmarks.gpu_wheels import NOT_CARRIED, normalize

    missing = []
    for line in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        if normalize(requirement.name) in NOT_CARRIED:
            continue
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{line} (not installed)")
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{line} ({version} installed)")
    return missing


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("paths", nargs="*", type=Path, help="stage JSON files, in order")
    parser.add_argument("--json", action="store_true", help="print them merged, not a table")
    parser.add_argument(
        "--missing", action="store_true", help="list the requirements not installed; exit 1 if any"
    )
    args = parser.parse_args(argv)
    if args.missing:
        missing = missing_requirements()
        print("\n".join(missing or ["every requirement of pyproject.toml is installed"]))
        sys.exit(1 if missing else 0)
    if args.json:
        sys.stdout.buffer.write(merged(args.paths) + b"\n")
    else:
        print(report(args.paths))


if __name__ == "__main__":
    main()
