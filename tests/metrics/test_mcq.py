"""MCQ arithmetic (runner/metrics/mcq.py): accuracy from fixed log-probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from runner.metrics import mcq as mcq_metrics


def test_accuracy_from_fixed_logprobs():
    logp = np.log(
        np.array(
            [
                [0.7, 0.1, 0.1, 0.1],  # A
                [0.1, 0.2, 0.6, 0.1],  # C
                [0.25, 0.25, 0.25, 0.25],  # tie: the first (A), as numpy / lm-eval
                [0.1, 0.1, 0.1, 0.7],  # D
                [0.1, 0.5, 0.3, 0.1],  # B
            ]
        )
    )
    preds = mcq_metrics.predictions(logp)
    assert preds.tolist() == [0, 2, 0, 3, 1]
    answers = [0, 1, 0, 3, 2]  # right, wrong, right, right, wrong
    assert mcq_metrics.accuracy(preds, answers) == pytest.approx(3 / 5)
    groups = ["bio", "bio", "cs", "cs", "cs"]
    assert mcq_metrics.grouped_accuracy(preds, answers, groups) == {
        "bio": pytest.approx(1 / 2),
        "cs": pytest.approx(2 / 3),
    }
