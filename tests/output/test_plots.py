"""The report's plots: the Pareto front by the columns' directions (the figures are drawn in test_report)."""

from __future__ import annotations

from runner.output.plots import pareto_front, ratio_label


def test_pareto_front_by_direction():
    points = [(0.9, 0.2), (0.5, 0.5), (0.4, 0.4), (0.1, 0.6), (0.9, 0.1)]
    assert pareto_front(points, ("up", "up")) == [0, 1, 3]
    assert pareto_front(points, ("down", "up")) == [3]
    assert pareto_front([(-0.3, 1.0), (0.1, 1.0), (0.5, 2.0)], ("zero", "up")) == [1, 2]


def test_a_ratio_curve_names_its_own_ratio():
    from matplotlib.figure import Figure

    from runner.output.plots import _coreset_curve
    from runner.output.preset import load_preset
    from runner.output.table import build_table

    runs = [
        {
            "status": "completed",
            "job_key": f"{name}-{ratio}",
            "choices": {"condense": name},
            "config": {"seed": 0, "condense": {"ratio": ratio}},
            "metrics": {
                "distilled": {"accuracy": ratio / 2, "train_seconds": 1.0, "train_tokens": 9, "mean_length": 3}
            },
        }
        for name in ("epic", "random")
        for ratio in (0.25, 0.5)
    ]
    preset = load_preset("epic")
    fig = Figure()
    _coreset_curve(fig, preset["plots"][0], build_table(runs, preset))
    assert {ax.get_xlabel() for ax in fig.axes} == {"kept ratio (share of each trace's thoughts)"}
    assert ratio_label("config.coreset.ratio").startswith("coreset ratio") and ratio_label("config.a.b_c") == "a b c"
