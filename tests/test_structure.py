"""The shape of runner/: no module over 400 lines, no import cycle (imports inside functions count too); no import\ncycle among scripts/ either."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

MAX_LINES = 400


def _module_paths(package: str = "runner") -> dict:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        found[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    return found


def import_graph(paths: dict) -> dict[str, set[str]]:
    """Each module -> the modules of ``paths`` it imports, wherever in its code (absolute or relative imports)."""
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # from . import x / from ..y import z
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                deps |= {base, *(f"{base}.{a.name}" for a in node.names)}
        graph[name] = {d for d in deps if d in paths and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path a -> ... -> a, or None (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from c import g\n")
    (tmp_path / "c.py").write_text("from a import x\n")
    graph = import_graph({m: tmp_path / f"{m}.py" for m in "abc"})
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_runner_has_no_import_cycle():
    cycle = find_cycle(import_graph(_module_paths()))
    assert cycle is None, " -> ".join(cycle)


def test_the_scripts_import_no_cycle():
    """The bench sections share scripts/bench_common.py and never import scripts/bench.py, which runs them."""
    cycle = find_cycle(import_graph(_module_paths("scripts")))
    assert cycle is None, " -> ".join(cycle)


def test_no_module_in_runner_is_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in _module_paths().values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these modules (at most {MAX_LINES} lines each): {long}"
