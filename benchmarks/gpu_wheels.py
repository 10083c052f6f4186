"""Fill a wheelhouse for a GPU machine with no network (`make gpu-wheels`).

    .venv/bin/python -m benchmarks.gpu_wheels wheelhouse --python-version 3.12

The project's wheel, and a wheel of each runtime requirement (pyproject.toml's,
then theirs, as installed here) at the lock's version (constraints.txt) for
that Python on manylinux x86_64: except torch, whatever
benchmarks/gpu-device-packages.txt lists as already there (their own
requirements are there with them) and NOT_CARRIED. benchmarks/gpu.sh installs
it with `pip install --no-index --no-deps wheelhouse/*.whl`, which leaves every
installed package as it is. The folder must fit, with the
working tree, in what the machine is sent (64 MiB): a larger one fails here.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
DEVICE_PACKAGES = Path(__file__).with_name("gpu-device-packages.txt")
LIMIT_MIB = 60
"""The wheelhouse's most: the working tree (about 2 MiB) travels with it within 64 MiB."""
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",  # ai-edge-litert's
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)


NOT_CARRIED = {"ai-edge-litert"}
"""Requirements the GPU benchmarks never use, left out to fit: LiteRT (22 MiB) runs only
the face annotator, a CPU cost measured on the CPU. gpu.sh installs the wheels without
resolving requirements, and `benchmarks.gpu --missing` passes over these."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def device_packages() -> set[str]:
    lines = DEVICE_PACKAGES.read_text().splitlines()
    return {normalize(line) for line in lines if line.strip() and not line.startswith("#")}


def to_carry(top: Iterable[str], present: set[str], python_version: str) -> list[str]:
    """The distributions that `top` needs, transitively, that are not in `present`
    (nor torch): read from the metadata installed here, markers judged for Linux x86_64."""
    environment = {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "extra": "",
    }
    skip = present | NOT_CARRIED | {"torch"}
    needed: set[str] = set()
    queue = list(top)
    while queue:
        requirement = Requirement(queue.pop())
        name = normalize(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        if name in skip or name in needed:
            continue
        needed.add(name)
        queue += importlib.metadata.requires(name) or []
    return sorted(needed)


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_wheels", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("folder", type=Path, help="emptied, then filled (e.g. wheelhouse)")
    parser.add_argument(
        "--python-version", default="3.12", help="the GPU machine's python3 (default 3.12)"
    )
    args = parser.parse_args(argv)
    top = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = to_carry(top, device_packages(), args.python_version)
    print(f"carrying {len(names)} packages: {' '.join(names)}")
    shutil.rmtree(args.folder, ignore_errors=True)
    args.folder.mkdir(parents=True)
    pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(args.folder), str(ROOT))
    platforms = [option for platform in PLATFORMS for option in ("--platform", platform)]
    pip(
        "download", "--quiet", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
        "--python-version", args.python_version, *platforms,
        "--constraint", str(ROOT / "constraints.txt"), "--dest", str(args.folder), *names,
    )  # fmt: skip
    wheels = sorted(args.folder.glob("*.whl"))
    total = sum(wheel.stat().st_size for wheel in wheels) / 2**20
    for wheel in wheels:
        print(f"{wheel.stat().st_size / 2**20:6.1f} MiB  {wheel.name}")
    print(f"{total:6.1f} MiB  in all, {len(wheels)} wheels in {args.folder}")
    if total > LIMIT_MIB:
        sys.exit(f"{args.folder} is {total:.1f} MiB, over the {LIMIT_MIB} MiB that can travel")


if __name__ == "__main__":
    main()
