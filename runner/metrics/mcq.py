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


# ---- which letters the model picks -------------------------------------------------------------

LETTERS = "ABCDEFGHIJ"
CONSTANT_LETTER_SHARE = 0.9  # above this share of one letter, accuracy measures the letter, not knowledge


def letter_counts(preds: Sequence[int], n_choices: int) -> dict[str, int]:
    """How often each answer letter was predicted (every letter of the choices, zeros included)."""
    counts = np.bincount(np.asarray(preds, dtype=int), minlength=n_choices)
    return {LETTERS[i]: int(c) for i, c in enumerate(counts)}


def answer_letters(per_example: dict) -> dict[str, dict[str, dict]]:
    """{row: {suite: {"counts": {A: n, ...}, "n", "accuracy", "top_share"}}} for every multiple-choice suite
    (one with per-question letter ``prediction`` and choice ``logprobs``) of a record's ``per_example``."""
    out: dict[str, dict[str, dict]] = {}
    for row, suites in (per_example or {}).items():
        for suite, per in (suites or {}).items() if isinstance(suites, dict) else ():
            if not isinstance(per, dict) or not per.get("logprobs") or "prediction" not in per:
                continue
            preds, answers = per["prediction"], per.get("answer") or []
            if not preds or not all(isinstance(p, int) and not isinstance(p, bool) for p in preds):
                continue
            counts = letter_counts(preds, max(len(per["logprobs"][0]), max(preds) + 1))
            out.setdefault(row, {})[suite] = {
                "counts": counts,
                "n": len(preds),
                "accuracy": accuracy(preds, answers) if len(answers) == len(preds) else None,
                "top_share": max(counts.values()) / len(preds),
            }
    return out
