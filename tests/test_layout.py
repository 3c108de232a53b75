"""The package's layout: no import cycles among gpunn's modules, nothing
in gpunn imports the checkout's benchmarks/, and ``gpunn --help`` loads
none of the heavy modules (numba, CuPy, PyTorch, Dask)."""

import ast
import os
import subprocess
import sys

import pytest

import gpunn

PACKAGE = os.path.dirname(os.path.abspath(gpunn.__file__))


def modules():
    """Return {module name: path} for every .py file of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, os.path.dirname(PACKAGE))
                parts = parts[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join(parts)] = path
    return found


def imported(tree, names, module):
    """Yield the gpunn modules (in ``names``) that the statements of
    ``tree`` import, at its top level or inside functions (imported when
    first called: a cycle through one is a cycle all the same)."""
    package = module if names[module].endswith("__init__.py") \
        else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in names:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split("."))
                                                  - node.level + 1]
                                + ([base] if base else []))
            for alias in node.names:
                if base + "." + alias.name in names:  # a submodule
                    yield base + "." + alias.name
                elif base in names:
                    yield base


def import_graph():
    names = modules()
    graph = {}
    for module, path in names.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        graph[module] = set(imported(tree, names, module)) \
            - {module}
    return graph


def test_the_graph_sees_the_imports_it_should():
    # The checker itself: it must find edges that are there, or the
    # cycle test below could pass on an empty graph.
    graph = import_graph()
    assert "gpunn.layers" in graph["gpunn.network3"]
    assert "gpunn.errors" in graph["gpunn"]


def test_no_import_cycles():
    graph = import_graph()
    path, cycles = [], []
    state = {}  # module -> "open" while on the path, "done" after

    def visit(module):
        state[module] = "open"
        path.append(module)
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                cycles.append(path[path.index(other):] + [other])
            elif other not in state:
                visit(other)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == [], "import cycles: " + "; ".join(
        " -> ".join(c) for c in cycles)


def test_the_package_does_not_import_the_checkouts_benchmarks():
    for module, path in modules().items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "benchmarks" or n.startswith("benchmarks.")
                           for n in names), (module, names)


@pytest.mark.system
@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["list"]])
def test_help_loads_no_heavy_module(argv):
    code = ("import sys, runpy; sys.argv = ['gpunn'] + {!r}\n"
            "try:\n    runpy.run_module('gpunn', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "heavy = [m for m in ('numba', 'cupy', "
            "'torch', 'dask', 'distributed') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n").format(argv)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.splitlines()[-1] == "HEAVY []", out[-2000:]
