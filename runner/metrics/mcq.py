"""Accuracy over multiple-choice scores (WMDP, MMLU): numbers in, numbers out.

The prompts and the forward passes that produce the per-choice log-likelihoods are in
``runner.benchmarks.mcq``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# ---- accuracy ----------------------------------------------------------------------------------


def predictions(logprobs: np.ndarray) -> np.ndarray:
    """Index of the most likely letter per question (the first on a tie, like numpy's / lm-eval's argmax)."""
    return np.argmax(np.asarray(logprobs), axis=1)


def accuracy(preds: Sequence[int], answers: Sequence[int]) -> float:
    preds, answers = np.asarray(preds), np.asarray(answers)
    return float(np.mean(preds == answers)) if len(answers) else float("nan")


def grouped_accuracy(preds: Sequence[int], answers: Sequence[int], groups: Sequence[str]) -> dict[str, float]:
    """Accuracy within each group (e.g. MMLU subject), groups in first-seen order."""
    preds, answers, groups = np.asarray(preds), np.asarray(answers), list(groups)
    out = {}
    for g in dict.fromkeys(groups):
        mask = np.array([x == g for x in groups])
        out[g] = accuracy(preds[mask], answers[mask])
    return out
