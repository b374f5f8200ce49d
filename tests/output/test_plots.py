"""The report's plots: the Pareto front by the columns' directions (the figures are drawn in test_report)."""

from __future__ import annotations

from runner.output.plots import pareto_front


def test_pareto_front_by_direction():
    points = [(0.9, 0.2), (0.5, 0.5), (0.4, 0.4), (0.1, 0.6), (0.9, 0.1)]
    assert pareto_front(points, ("up", "up")) == [0, 1, 3]
    assert pareto_front(points, ("down", "up")) == [3]
    assert pareto_front([(-0.3, 1.0), (0.1, 1.0), (0.5, 2.0)], ("zero", "up")) == [1, 2]
