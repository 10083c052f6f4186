"""The import contract of the packages (docs/architecture.md, Packages).

- The session core is sans-I/O: importing every `session` module, in a fresh
  interpreter, leaves asyncio, threading, torch, PIL and simplejpeg (and the
  server's libraries) out of `sys.modules`. One exception, named exactly: the
  standard library's `logging` imports `threading` itself, and `session` logs;
  so `threading` may be loaded when `logging` is the first to import it. As that
  hides any later importer, the source of `session` is read too: no module of it
  imports threading, asyncio or a clock (`now` is passed in) itself.
- Layers point one way: `frames` and `models` import neither `realtime` nor
  `session`; `session` never imports `realtime` nor the web and media libraries
  (starlette, websockets, aiortc). Every import statement counts there, in
  functions and under `if TYPE_CHECKING:` included: a layer may not even name
  one above it.
- No import circles among the project's modules. An edge is an import that runs
  when its module is first imported: a module-level statement (in an `if` or
  `try` at module level too). Imports inside functions (they run later, once
  every module is whole) and under `if TYPE_CHECKING:` (they never run) are no
  edges. `from package import name` is an edge to `package.name` when that is a
  module, else to `package`.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("realtime", "session", "frames", "models")

SESSION_CORE_MUST_NOT_LOAD = frozenset(
    {"asyncio", "threading", "torch", "PIL", "simplejpeg"}
    | {"realtime", "starlette", "websockets", "aiortc", "uvicorn", "av"}
)
LOADED_BY_THE_STDLIB = {"threading": "logging"}
"""Forbidden modules the standard library loads for the session core, by who loads them."""

SESSION_NEVER_IMPORTS = frozenset(
    {"realtime", "starlette", "websockets", "aiortc", "uvicorn", "av", "torch", "PIL"}
    | {"simplejpeg", "asyncio", "threading", "concurrent", "multiprocessing", "socket"}
    | {"queue", "time"}
)
"""Nor `time`: the session core reads no clock, every event brings its `now`."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_of(*packages: str) -> dict[str, Path]:
    return {
        module_name(path): path
        for package in packages
        for path in sorted((ROOT / package).rglob("*.py"))
    }


PROJECT = modules_of(*PACKAGES)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules an import statement in `module` names, submodules resolved."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:  # relative: from the module's own package, up `level` - 1
        package = module if _is_package(module) else module.rpartition(".")[0]
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1])
        source = f"{base}.{node.module}" if node.module else base
    else:
        source = node.module or ""
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        yield submodule if submodule in PROJECT else source


def _is_package(module: str) -> bool:
    path = PROJECT.get(module)
    return path is not None and path.name == "__init__.py"


def imports_of(module: str, *, at_module_level: bool) -> set[str]:
    """What `module` imports. `at_module_level`: only the statements that run when it
    is imported (not in functions, not under TYPE_CHECKING); else every statement."""
    tree = ast.parse(PROJECT[module].read_text(), str(PROJECT[module]))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.update(imported(module, node))
        elif at_module_level and isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        elif at_module_level and isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        ):
            return
        for inner in ast.iter_child_nodes(node):
            visit(inner)

    visit(tree)
    return found


def top(module: str) -> str:
    return module.partition(".")[0]


# The session core, sans-I/O


LOAD_SESSION_CORE = """
import json, sys

watched = set(json.loads(sys.argv[1]))
before = {name for name in watched if name in sys.modules}
loaded_by = {}


class Watch:
    # Notes who first imports each watched module: the first caller outside importlib.
    def find_spec(self, name, path=None, target=None):
        root = name.partition(".")[0]
        if root in watched and root not in loaded_by:
            frame = sys._getframe(1)
            while frame is not None and frame.f_globals.get("__name__", "").startswith(
                ("importlib", "_frozen_importlib")
            ):
                frame = frame.f_back
            loaded_by[root] = frame.f_globals.get("__name__") if frame else None
        return None


sys.meta_path.insert(0, Watch())
for module in json.loads(sys.argv[2]):
    __import__(module)
loaded = {name: loaded_by.get(name) for name in watched if name in sys.modules}
print(json.dumps({"before": sorted(before), "loaded": loaded}))
"""


def test_importing_the_session_core_leaves_io_threads_torch_and_codecs_out() -> None:
    session_modules = sorted(modules_of("session"))
    assert {"session.session", "session.batching", "session.restarts"} <= set(session_modules)
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_SESSION_CORE,
            json.dumps(sorted(SESSION_CORE_MUST_NOT_LOAD)),
            json.dumps(session_modules),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.splitlines()[-1])
    assert report["before"] == [], f"the interpreter starts with {report['before']} loaded"
    loaded: dict[str, str | None] = report["loaded"]
    unexplained = {
        name: by for name, by in loaded.items() if LOADED_BY_THE_STDLIB.get(name, "-") != by
    }
    assert unexplained == {}, "importing session.* loaded these (module: first importer)"


def imports_of_top(packages: tuple[str, ...], forbidden: frozenset[str]) -> dict[str, list[str]]:
    """The modules of `packages` that import a module of a `forbidden` top-level
    package anywhere (in functions and under TYPE_CHECKING too), with what."""
    found = {
        module: sorted(
            name for name in imports_of(module, at_module_level=False) if top(name) in forbidden
        )
        for module in modules_of(*packages)
    }
    return {module: names for module, names in found.items() if names}


def test_no_session_module_imports_io_threads_clocks_or_the_server() -> None:
    assert imports_of_top(("session",), SESSION_NEVER_IMPORTS) == {}


# Layers


def test_frames_and_models_never_import_realtime_nor_session() -> None:
    assert imports_of_top(("frames", "models"), frozenset({"realtime", "session"})) == {}


# Import circles


def import_graph() -> dict[str, set[str]]:
    return {
        module: {name for name in imports_of(module, at_module_level=True) if name in PROJECT}
        - {module}
        for module in PROJECT
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each group of modules that import one another, as a path
    that starts and ends at the same module."""
    cycles: list[list[str]] = []
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> None:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph.get(module, ())):
            if target in on_path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target)
        on_path.discard(module)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module)
    return cycles


def test_the_graph_sees_the_imports_it_should() -> None:
    graph = import_graph()
    assert "session.jobs" in graph["realtime.server.worker"]
    assert "models.lcm" in graph["models.families"]  # `from models import lcm`
    assert "realtime.server.app" not in graph["realtime.cli"]  # imported in a function
    assert "realtime.server.worker" not in graph["realtime.server.metrics"]  # TYPE_CHECKING
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_circles() -> None:
    cycles = find_cycles(import_graph())
    assert cycles == [], "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)
