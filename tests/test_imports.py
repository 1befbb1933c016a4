"""dlkit's modules import each other without cycles.

The graph has an edge from a module to every dlkit module it imports anywhere in its
file (a late import inside a function counts: it only hides a cycle), and to the
packages above that module, whose ``__init__`` runs first. A package imported by one
of its own sub-modules is already initialising, so that edge is left out, and so are
imports under ``if TYPE_CHECKING:``, which never run.
"""
import ast
import pathlib

ROOT = pathlib.Path(__file__).parents[1] / "dlkit"


def module_names() -> dict:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def ancestors(name: str) -> list:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imports_of(name: str, path: pathlib.Path, modules: dict) -> set:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    tree = ast.parse(path.read_text())
    for block in ast.walk(tree):  # drop the annotation-only imports
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test):
            block.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found = [base] + [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
        else:
            continue
        for target in found:
            if target.split(".")[0] != "dlkit":
                continue
            targets.update(t for t in [*ancestors(target), target] if t in modules)
    return {t for t in targets if t != name and t not in ancestors(name)}


def find_cycle(graph: dict):
    """A cycle as a list of modules, or None (depth-first search with colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    modules = module_names()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert len(graph) > 40 and graph["dlkit.training.trainer"]  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_late_import_cycle(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    late = tmp_path / "m.py"
    late.write_text("def f():\n    from dlkit.layers.base import Layer\n")
    assert imports_of("dlkit.symbolic", late, module_names()) == {"dlkit.layers", "dlkit.layers.base"}
    late.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dlkit.layers.base import Layer\n")
    assert imports_of("dlkit.symbolic", late, module_names()) == set()
