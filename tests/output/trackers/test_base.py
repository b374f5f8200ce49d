"""The tracker contract: the Trainer's logs become ``log_step`` calls; ``finish`` logs then closes, whatever happens."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from runner.output.trackers.base import Tracker, numbers


class Recording(Tracker):
    def __init__(self, fail: bool = False):
        self.calls, self.fail = [], fail

    def log_step(self, stage, step, values):
        self.calls.append(("step", stage, step, values))

    def log_results(self, results):
        self.calls.append(("results", results["status"]))
        if self.fail:
            raise RuntimeError("dashboard down")

    def close(self, completed):
        self.calls.append(("close", completed))


def test_trainer_logs_become_steps_of_the_stage_named_by_the_output_directory():
    tracker = Recording()
    (callback,) = tracker.callbacks
    args, state = SimpleNamespace(output_dir="/run/unlearn"), SimpleNamespace(global_step=7)
    callback.on_log(args, state, None, logs={"loss": 1.5, "epoch": 1, "flag": True, "note": "text"})
    assert tracker.calls == [("step", "unlearn", 7, {"loss": 1.5, "epoch": 1.0})]
    assert numbers({"a": "2.5", "b": None}) == {"a": 2.5}


@pytest.mark.parametrize("fail", [False, True])
def test_finish_logs_results_then_closes_even_when_logging_fails(fail, caplog):
    tracker = Recording(fail)
    tracker.finish({"status": "failed"})
    assert tracker.calls == [("results", "failed"), ("close", False)]
    assert ("could not log the final results (dashboard down)" in caplog.text) == fail
    tracker = Recording()
    tracker.finish({"status": "completed"})
    assert tracker.calls[-1] == ("close", True)


def test_the_contract_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Tracker()


def test_summary_and_metric_rows_of_a_record():
    from runner.output.trackers.summary import metric_rows, summary_of

    results = {
        "status": "failed",
        "metrics": {"target": {"forget_prob": 0.9, "custom": 1.0}, "unlearned": {"forget_prob": 0.2}},
        "timings": {"unlearn": 3.5},
        "training": {"unlearn": {"steps": 12, "converged": True}},
        "error": {"message": "x" * 600},
    }
    summary = summary_of(results)
    assert summary == {
        "status": "failed",
        "target/forget_prob": 0.9,
        "target/custom": 1.0,
        "unlearned/forget_prob": 0.2,
        "timings/unlearn": 3.5,
        "training/unlearn/steps": 12,  # a flag is not a number worth a summary
        "error": "x" * 500,
    }
    columns, rows = metric_rows(results["metrics"])
    assert columns == ["metric", "label", "better", "target", "unlearned"]
    assert rows == [["forget_prob", "Forget Prob.", "↓", 0.9, 0.2], ["custom", "custom", "", 1.0, None]]
