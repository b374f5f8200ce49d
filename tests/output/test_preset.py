"""Report presets: loading with overrides, and how a column gets its label and direction."""

from __future__ import annotations

import pytest

from runner.errors import ConfigError
from runner.output.preset import load_preset, parse_columns


def test_load_with_overrides_and_unknown_preset():
    preset = load_preset("tofu", ["rows=[choices.method,config.seed]", "title=T"])
    assert preset["rows"] == ["choices.method", "config.seed"] and preset["title"] == "T"
    with pytest.raises(ConfigError, match="choose one of: .*tofu"):
        load_preset("nope")


def test_column_labels_directions_units():
    by_name, by_spec, dotted, custom, percent = parse_columns(
        [
            "forget_prob",  # a name typed as a name is headed by it
            {"metric": "forget_prob", "format": ".2e"},  # a declared metric, headed by its label
            "attack.task_after",  # a dotted key
            {"key": "timings.unlearn", "label": "seconds", "direction": "down"},  # undeclared: its own
            {"metric": "accuracy", "scale": 100, "unit": "%"},
        ]
    )
    assert (by_name.header, by_name.direction, by_name.metric) == ("forget_prob ↓", "down", "forget_prob")
    assert (by_spec.header, by_spec.fmt) == ("Forget Prob. ↓", ".2e")
    assert (dotted.key, dotted.metric, dotted.direction, dotted.label) == (
        "attack.task_after",
        None,
        "up",
        "attack.task_after",
    )
    assert (custom.header, custom.direction) == ("seconds ↓", "down")
    assert (percent.header, percent.scale) == ("Accuracy (%) ↑", 100.0)
    run = {"metrics": {"unlearned": {"accuracy": 0.25, "flag": True}}, "timings": {"unlearn": float("nan")}}
    assert percent.value(run, "unlearned") == 25.0
    assert custom.value(run, "unlearned") is None  # not finite
    assert parse_columns(["flag"])[0].value(run, "unlearned") is None  # a flag is not a number


def test_a_preset_may_not_relabel_a_declared_metric_nor_invent_a_direction():
    with pytest.raises(ConfigError, match="runner/output/metrics.py"):
        parse_columns([{"metric": "forget_prob", "label": "FP"}])
    with pytest.raises(ConfigError, match="runner/output/metrics.py"):
        parse_columns([{"metric": "forget_prob", "direction": "up"}])
    with pytest.raises(ConfigError, match="use up, down or zero"):
        parse_columns([{"key": "timings.unlearn", "direction": "sideways"}])
    with pytest.raises(ConfigError, match="names neither"):
        parse_columns([{"format": ".1f"}])
