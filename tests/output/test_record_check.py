"""Damaged results.json files in a report: a named † row or a warning line naming the file, never a traceback,
and never a run dropped from a mean without a word. The records are written by hand: the report reads JSON only."""

from __future__ import annotations

import json
import logging
import math

import pytest

from runner import report
from runner.output.record_check import DAMAGED, check_record


def _good(seed: int, prob: float) -> dict:
    return {
        "status": "completed",
        "job_key": f"good-{seed}",
        "choices": {"method": "npo"},
        "config": {"seed": seed},
        "metrics": {"unlearned": {"forget_prob": prob}},
    }


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


# a field of the wrong shape: the record cannot be trusted, so it is a † row whose note names the file
DAMAGED_RECORDS = {
    "status-number": {**_good(5, 0.1), "status": 3, "job_key": "d1"},
    "status-list": {**_good(5, 0.1), "status": ["completed"], "job_key": "d2"},
    "job-key-dict": {**_good(5, 0.1), "job_key": {"a": 1}},
    "job-key-list": {**_good(5, 0.1), "job_key": [1, 2]},
    "bare-completed": {"status": "completed"},
    "metrics-text": {**_good(5, 0.1), "metrics": "high", "job_key": "d3"},
    "metrics-list": {**_good(5, 0.1), "metrics": [0.1, 0.2], "job_key": "d4"},
    "choices-text": {**_good(5, 0.1), "choices": "npo", "job_key": "d5"},
    "finished-number": {**_good(5, 0.1), "finished": 1700000000, "job_key": "d6"},
    "seed-text": {**_good(5, 0.1), "config": {"seed": "zero"}, "job_key": "d7"},
}
# one metric that is not a finite number: left out of the mean, with a note naming the file and the metric
BAD_VALUES = {"value-text": "abc", "value-list": [0.5], "value-nan": math.nan, "value-inf": math.inf, "value-dict": {}}


def _write(root, name: str, content) -> None:
    (root / name).mkdir()
    text = content if isinstance(content, str) else json.dumps(content)
    (root / name / "results.json").write_text(text)


def _report(tmp_path, caplog, capsys) -> tuple[str, str]:
    with caplog.at_level(logging.WARNING):
        code = report.main([str(tmp_path), "report=generic", "columns=[forget_prob]", "--no-plots"])
    assert code == 0
    return capsys.readouterr().out, caplog.text


@pytest.mark.parametrize("name", sorted(DAMAGED_RECORDS))
def test_a_damaged_record_is_a_named_dagger_row(name, tmp_path, caplog, capsys):
    _write(tmp_path, "good-0", _good(0, 0.2))
    _write(tmp_path, "good-1", _good(1, 0.4))
    _write(tmp_path, name, DAMAGED_RECORDS[name])
    markdown, warnings = _report(tmp_path, caplog, capsys)
    path = str(tmp_path / name / "results.json")
    assert f"damaged record {path}" in warnings
    assert f"{path} is damaged" in markdown  # the note under the table
    assert "†" in markdown and "| ? " not in markdown
    # the two good runs' mean (0.2 + 0.4) / 2 with their std, never mixed with the damaged record's 0.1
    npo = next(line for line in markdown.splitlines() if line.startswith("| NPO"))
    assert "0.300 ± 0.141" in npo


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_a_metric_that_is_not_a_number_is_left_out_with_a_note(name, tmp_path, caplog, capsys):
    _write(tmp_path, "good-0", _good(0, 0.2))
    bad = _good(1, 0.0)
    bad["metrics"]["unlearned"]["forget_prob"] = BAD_VALUES[name]
    bad["metrics"]["unlearned"]["model_utility"] = 0.7  # its other numbers still count
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(bad))  # NaN / Infinity as Python writes them
    markdown, warnings = _report(tmp_path, caplog, capsys)
    path = str(tmp_path / name / "results.json")
    assert f"{path}: metrics.unlearned.forget_prob is" in warnings
    assert f"{path}: metrics.unlearned.forget_prob is" in markdown and "left out of the mean" in markdown
    npo = next(line for line in markdown.splitlines() if line.startswith("| NPO"))
    assert "0.200" in npo and "±" not in npo and "†" not in npo  # one value: the good run's


@pytest.mark.parametrize("depth", [200, 5000])
def test_a_deeply_nested_record_is_named_not_a_traceback(depth, tmp_path, caplog, capsys):
    _write(tmp_path, "good-0", _good(0, 0.2))
    _write(tmp_path, "deep", '{"status": "completed", "config": ' + _nested(depth) + "}")
    markdown, warnings = _report(tmp_path, caplog, capsys)
    path = str(tmp_path / "deep" / "results.json")
    assert path in warnings  # unreadable (past the parser's depth) or damaged (past the record's)
    if depth == 200:
        assert "| deep (damaged record) † |" in markdown and "nested deeper than 64 levels" in markdown


def test_check_record_keeps_good_records_as_they_are():
    good = _good(0, 0.2) | {"metrics": {"unlearned": {"forget_prob": 0.2, "extraction": None}}}
    assert check_record(good) == good  # null is an explicit "no value", not damage
    assert check_record({}) == {}  # a job stopped before writing: a run without fields, as before
    failed = {"status": "failed", "error": {"message": "x"}}
    assert check_record(failed) == failed  # a failed record needs no metrics
    assert check_record({"status": "completed", "metrics": {"unlearned": {}}})["status"] == DAMAGED
