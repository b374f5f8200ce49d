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


def test_answer_letters_count_each_letter_beside_accuracy():
    per_example = {
        "unlearned": {
            "mmlu": {"prediction": [0, 0, 2, 0], "answer": [0, 1, 2, 3], "logprobs": [[0.0] * 4] * 4, "subject": []},
            "forget": {"prob": [0.1]},  # not multiple choice: left out
        },
        "target": {"wmdp_bio": {"prediction": [1] * 10, "answer": [1] * 3 + [0] * 7, "logprobs": [[0.0] * 4] * 10}},
    }
    letters = mcq_metrics.answer_letters(per_example)
    assert letters["unlearned"] == {
        "mmlu": {"counts": {"A": 3, "B": 0, "C": 1, "D": 0}, "n": 4, "accuracy": 0.5, "top_share": 0.75}
    }
    assert letters["target"]["wmdp_bio"]["counts"] == {"A": 0, "B": 10, "C": 0, "D": 0}
    assert letters["target"]["wmdp_bio"]["top_share"] == 1.0 and letters["target"]["wmdp_bio"]["accuracy"] == 0.3
