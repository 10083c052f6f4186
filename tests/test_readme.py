"""The README's Python examples, run as pasted against a real `realtime serve`, so
that they cannot rot. Each talks to the server as `make serve` starts it
(127.0.0.1:8000, default options); here that address becomes a test server's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from support import StartServer

from realtime.bench.harness import ServerProcess

README = Path(__file__).resolve().parents[1] / "README.md"
MAKE_SERVE_ADDRESS = "127.0.0.1:8000"
TIMEOUT_S = 120


def python_blocks(markdown: str) -> list[str]:
    """The code of every ```python block, in order."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.DOTALL | re.MULTILINE)


EXAMPLES = python_blocks(README.read_text())


def test_the_readme_has_a_python_example() -> None:
    assert EXAMPLES, "README.md has no ```python block"


def test_python_blocks_finds_each_block() -> None:
    markdown = "x\n```python\nprint(1)\n```\n```sh\nls\n```\n```python\nprint(2)\n```\n"
    assert python_blocks(markdown) == ["print(1)\n", "print(2)\n"]


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server()  # the default model, tiny, as `make serve`'s first


@pytest.mark.parametrize("code", EXAMPLES, ids=[f"block{i}" for i in range(len(EXAMPLES))])
def test_the_readme_python_example_runs_as_pasted(
    code: str, server: ServerProcess, tmp_path: Path
) -> None:
    assert MAKE_SERVE_ADDRESS in code, "the example should talk to `make serve`'s server"
    pasted = code.replace(MAKE_SERVE_ADDRESS, f"127.0.0.1:{server.port}")
    result = subprocess.run(
        [sys.executable, "-c", pasted],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), "the example printed nothing"
    for written in tmp_path.glob("*.png"):  # what it saved must be a picture
        with Image.open(written) as image:
            assert image.size == (256, 256), written
