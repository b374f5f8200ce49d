"""The metric specs: every metric a benchmark reports and every preset shows is declared once, with a direction."""

from __future__ import annotations

import ast

import pytest

from runner.output.metrics import ARROWS, METRICS, MetricSpec, arrow, spec
from runner.output.preset import PRESETS_DIR, load_preset, parse_columns
from tests.conftest import ROOT


def test_directions_and_arrows():
    assert (spec("forget_prob").direction, arrow("forget_prob")) == ("down", "↓")
    assert (spec("model_utility").direction, arrow("model_utility")) == ("up", "↑")
    assert (spec("privleak").direction, arrow("privleak")) == ("zero", "→0")
    assert (spec("mean_length").direction, arrow("mean_length")) == ("none", "")
    assert spec("no_such_metric") is None and arrow("no_such_metric") == ""
    assert all(s.name == name and s.direction in ARROWS and s.label for name, s in METRICS.items())
    with pytest.raises(ValueError, match="sideways"):
        MetricSpec("x", "sideways", "X")


def _summarize_keys() -> set[str]:
    """The string keys of dict literals in the benchmarks' ``summarize`` / ``summary`` functions."""
    keys = set()
    for path in (ROOT / "runner" / "benchmarks").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name in ("summarize", "summary"):
                for d in ast.walk(node):
                    if isinstance(d, ast.Dict):
                        keys |= {k.value for k in d.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return keys


def test_every_metric_a_benchmark_summarizes_is_declared():
    # the dict literals of summarize() also hold nested suite names; the metrics are these
    metrics = {"forget_quality", "model_utility", "forget_prob", "forget_rouge", "forget_truth_ratio"}
    metrics |= {"retain_prob", "retain_rouge", "mmlu", "verbmem_forget", "knowmem_forget", "knowmem_retain"}
    metrics |= {"privleak", "privleak_auc"}
    assert metrics <= _summarize_keys()  # the list above is what the benchmarks return today
    assert metrics <= set(METRICS)
    assert {"wmdp_bio", "wmdp_cyber", "wmdp_chem", "accuracy", "pass@4", "pass@16"} <= set(METRICS)


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
def test_presets_show_declared_metrics_without_redefining_them(name):
    preset = load_preset(name)
    columns = parse_columns(preset["columns"])  # a label or direction given for a declared metric raises
    for item, col in zip(preset["columns"], columns, strict=True):
        if isinstance(item, dict):
            assert spec(col.id) is not None, f"{name}: {col.id} is not declared in runner/output/metrics.py"
            assert col.label.startswith(spec(col.id).label) and col.direction == spec(col.id).direction
        assert col.direction == (spec(col.id).direction if spec(col.id) else "none")
    assert "labels" not in preset or name == "generic"  # config choices' display names live in CHOICE_LABELS
