"""The training loop (runner/training.py): a NaN loss marks the run failed at its step."""

from __future__ import annotations

import json

import pytest

from runner import job
from runner.errors import TrainingDiverged


def test_nan_loss_marks_the_run_failed_with_the_step(tiny_cfg, tmp_path):
    # gradient ascent at an absurd learning rate blows the weights up within a few steps
    cfg = tiny_cfg("method=ga", "unlearn.learning_rate=1e8", "unlearn.max_grad_norm=0", "unlearn.max_steps=50")
    with pytest.raises(TrainingDiverged):
        job.run(cfg, tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed"
    assert record["error"]["stage"] == "unlearn"
    assert isinstance(record["error"]["step"], int) and record["error"]["step"] >= 1
