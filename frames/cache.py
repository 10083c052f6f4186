"""What the project builds or fetches on first use, and where: `$REALTIME_CACHE`
(default `~/.cache/realtime`), each folder made atomically so that processes that
start together never see half of one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_folder() -> Path:
    """`$REALTIME_CACHE`, by default `~/.cache/realtime`."""
    return Path(
        os.environ.get("REALTIME_CACHE") or Path.home() / ".cache" / "realtime"
    ).expanduser()


def build_atomically(folder: Path, build: Callable[[Path], None]) -> None:
    """`build` into a temporary sibling of `folder`, then rename it into place: of several
    processes building at once, the first rename wins and the others discard theirs
    (identical: the builds are deterministic). An existing `folder` is left as it is;
    whatever `build` raises propagates, its partial folder removed."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        build(building)
        try:
            building.rename(folder)
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
