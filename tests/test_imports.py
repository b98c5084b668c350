"""The package's internal imports point one way: no module imports, directly or through others,
one that imports it back (function-level imports included: a lazy import only hides a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import ssdzoo

PACKAGE = Path(ssdzoo.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(path: Path) -> set[str]:
    """ssdzoo modules ``path`` imports anywhere in its body (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    skipped = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` imports are for annotations, never run
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            skipped.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[:len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ssdzoo"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ssdzoo"))
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        # a module depends on the modules it names, and on their packages' __init__
        graph[name] = {t for t in internal_imports(path) if t in files and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]], within: set[str]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in within:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(within):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_model_weights_convert_point_one_way():
    """build_model loads weights, weights reads converted files, and convert never builds a model."""
    graph = import_graph()
    assert "ssdzoo.weights" in graph["ssdzoo.model.build"]
    assert {"ssdzoo.convert.mindspore", "ssdzoo.convert.tensorflow"} <= graph["ssdzoo.weights"]
    layers = {n for n in graph if n.startswith(("ssdzoo.model", "ssdzoo.convert")) or n == "ssdzoo.weights"}
    assert find_cycle(graph, layers) is None
    assert not any(t.startswith(("ssdzoo.model", "ssdzoo.weights")) for n in graph if n.startswith("ssdzoo.convert")
                   for t in graph[n])


def test_no_import_cycle_below_the_commands():
    graph = import_graph()
    library = {n for n in graph if not n.startswith(("ssdzoo.commands", "ssdzoo.cli", "ssdzoo.__main__"))
               and n != "ssdzoo"}
    assert find_cycle(graph, library) is None


def test_submodules_are_attributes_of_the_package_imported_on_first_use():
    """The README's Python API: ``import ssdzoo`` then ``ssdzoo.inference.Predictor``."""
    import subprocess
    import sys

    code = ("import sys, ssdzoo; assert 'ssdzoo.predict' not in sys.modules; "
            "print(ssdzoo.inference.Predictor.__name__, ssdzoo.predict.run_predict.__name__, "
            "ssdzoo.data.prepare_voc.__name__, ssdzoo.convert.tensorflow_config.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Predictor", "run_predict", "prepare_voc", "tensorflow_config"]
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        ssdzoo.nonexistent
