"""The shape of runner/output: small modules, no import cycle, the old top-level modules gone."""

from __future__ import annotations

import ast
import importlib

from tests.conftest import ROOT

PACKAGE = ROOT / "runner" / "output"


def _modules() -> dict[str, set[str]]:
    """Each module of runner.output -> the runner.output modules it imports (at any depth of its code)."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        names[name] = path
    graph = {}
    for name, path in names.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                deps |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in names and d != name}
    return graph


def test_every_module_imports_and_none_is_over_400_lines():
    for name in _modules():
        importlib.import_module(name)
    for path in PACKAGE.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path


def test_no_import_cycle_and_plots_and_report_stay_apart():
    graph = _modules()

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for dep in graph[todo.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    assert [m for m in graph if m in reach(m)] == []
    assert "runner.output.report" not in reach("runner.output.plots")
    assert "runner.output.render" not in reach("runner.output.plots")
    assert "runner.output.plots" not in reach("runner.output.render")


def test_the_old_top_level_modules_are_gone():
    for old in ("results", "table", "plots", "tracking", "secrets"):
        assert not (ROOT / "runner" / f"{old}.py").exists(), old
