"""Telling two models apart from what they produce: splits by question, out-of-fold accuracy, intervals, probes.

Every example is one model's response to one question, labelled by the model. The split is by question
(scikit-learn's group splitters with the question as the group): a question and every model's response to
it fall on one side, so the classifier never sees at test time a question it trained on, and each side
holds the same questions for both models (balanced labels).

With ``folds >= 2`` (GroupKFold, shuffled) every question is tested once, by the model trained on the
other folds, and the accuracy is over all of them; with ``folds: 1`` one GroupShuffleSplit holds out
``test_fraction`` of the questions (the paper's single split). The 95% interval is Wilson's score interval
for a binomial proportion over the test responses (two per question for a pair of models; the two
responses to one question are not independent, so the interval is, if anything, a little narrow).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import GroupKFold, GroupShuffleSplit

from runner.errors import ConfigError

Z95 = 1.959963984540054  # the normal quantile for a two-sided 95% interval


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion (nan, nan for n = 0)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def splits(groups, folds: int, seed: int, test_fraction: float = 0.3) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index arrays, split by ``groups`` (the question of each example)."""
    groups = np.asarray(groups)
    index = np.zeros(len(groups))
    if folds >= 2:
        return list(GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(index, groups=groups))
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
    return list(splitter.split(index, groups=groups))


def check_split(questions: dict[str, int], folds: int, test_fraction: float) -> None:
    """Refuse, before any generation, a split of a prompt set (``questions``: its count per set) that would
    leave a fold with no question to train or to test on (scikit-learn would fail after the generation)."""
    small = {name: n for name, n in questions.items() if n < max(2, folds)}
    if small:
        raise ConfigError(
            "analysis.split.folds",
            f"{folds} folds need at least {max(2, folds)} questions per prompt set; {small} have fewer",
            "fewer folds, or more questions (analysis.prompts.<set>.n / per_subject)",
        )
    if folds == 1:  # GroupShuffleSplit tests ceil(f * n) questions and trains on floor((1 - f) * n)
        empty = {
            name: n
            for name, n in questions.items()
            if math.ceil(test_fraction * n) < 1 or math.floor((1 - test_fraction) * n) < 1
        }
        if empty:
            raise ConfigError(
                "analysis.split.test_fraction",
                f"{test_fraction} of the questions leaves no question to train or to test on in {empty}",
                "a test_fraction nearer 0.3, or more questions (analysis.prompts.<set>.n / per_subject)",
            )


def out_of_fold(fit_predict: Callable, folds: list, n: int) -> np.ndarray:
    """Each example's prediction by the classifier trained without its question; -1 where never tested."""
    pred = np.full(n, -1, dtype=int)
    for train, test in folds:
        pred[test] = fit_predict(train, test)
    return pred


def summary(y, pred, groups) -> dict:
    """Accuracy over the tested examples, with counts, Wilson 95% interval and confusion matrix."""
    y, pred, groups = np.asarray(y), np.asarray(pred), np.asarray(groups)
    tested = pred >= 0
    correct = int((pred[tested] == y[tested]).sum())
    n = int(tested.sum())
    low, high = wilson(correct, n)
    labels = sorted(set(y.tolist()))
    return {
        "accuracy": correct / n if n else math.nan,
        "ci95": [low, high],
        "n_test_responses": n,
        "n_test_questions": len(set(groups[tested].tolist())),
        "confusion_matrix": confusion_matrix(y[tested], pred[tested], labels=labels).tolist(),
    }


def sklearn_fit_predict(make: Callable, x: np.ndarray, y) -> Callable:
    """A ``fit_predict(train, test)`` for ``out_of_fold`` from a scikit-learn estimator factory."""
    y = np.asarray(y)

    def fit_predict(train, test):
        if len(set(y[train].tolist())) < 2:  # one class only: nothing to learn, say the one class
            return np.full(len(test), y[train][0])
        return make().fit(x[train], y[train]).predict(x[test])

    return fit_predict


def linear_probe(seed: int = 0):
    """Standardised features -> logistic regression (the per-layer probes and the frozen-encoder text head)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))


def mlp_probe(hidden: tuple[int, ...] = (1024, 256, 128), seed: int = 0, max_iter: int = 300):
    """The paper's MLP probe shape d -> 1024 -> 256 -> 128 -> 2 (scikit-learn's MLP: L2 penalty and early stopping
    where the paper used batch norm and dropout)."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        MLPClassifier(
            hidden_layer_sizes=tuple(hidden), alpha=1e-3, max_iter=max_iter, early_stopping=True, random_state=seed
        ),
    )


def probe_by_layer(features: np.ndarray, y, groups, folds: list, seed: int = 0) -> list[dict]:
    """``features``: (examples, layers, d); a linear probe per layer, out of fold: its summary per layer."""
    out = []
    for layer in range(features.shape[1]):
        x = features[:, layer, :]
        pred = out_of_fold(sklearn_fit_predict(lambda: linear_probe(seed), x, y), folds, len(y))
        out.append(summary(y, pred, groups))
    return out
