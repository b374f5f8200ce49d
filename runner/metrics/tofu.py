"""TOFU metrics (Maini et al., 2024), as pure functions on per-example numbers.

Inputs are *average* negative log-likelihoods per answer token
(``avg_nll = -log P(a|q) / |a|``), so ``exp(-avg_nll)`` is the
length-normalised probability ``P(a|q)^(1/|a|)`` the paper uses everywhere.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import ks_2samp

# the nine Model Utility inputs: {retain, real authors, world facts} x
# {Probability, ROUGE-L recall, Truth Ratio statistic}
UTILITY_SPLITS = ("retain", "real_authors", "world_facts")
UTILITY_STATS = ("prob", "rouge", "truth_ratio")


def normalised_prob(avg_nll: np.ndarray | Sequence[float]) -> np.ndarray:
    """P(a|q)^(1/|a|) from the average per-token NLL."""
    return np.exp(-np.asarray(avg_nll, dtype=np.float64))


def option_prob(correct_avg_nll: Sequence[float], wrong_avg_nll: Sequence[Sequence[float]]) -> np.ndarray:
    """Probability with options (real authors / world facts).

    P(correct) / (P(correct) + sum_i P(wrong_i)), each P length-normalised,
    one value per question.
    """
    correct = normalised_prob(correct_avg_nll)
    wrong = np.array([normalised_prob(row).sum() for row in wrong_avg_nll])
    return correct / (correct + wrong)


def truth_ratio(true_avg_nll: Sequence[float], false_avg_nll: Sequence[Sequence[float]]) -> np.ndarray:
    """Per-question truth ratio R = P_false / P_true.

    P_true is the length-normalised probability of the paraphrased answer
    (the answer itself for real authors / world facts); P_false the geometric
    mean of the perturbed answers' length-normalised probabilities, as in the
    TOFU release (mean of the perturbed average losses, then exp).
    """
    true_nll = np.asarray(true_avg_nll, dtype=np.float64)
    false_nll = np.array([np.mean(row) for row in false_avg_nll], dtype=np.float64)
    return np.exp(true_nll - false_nll)


def truth_ratio_forget_stat(ratios: Sequence[float]) -> float:
    """Forget split: best when false and true answers are equally likely, mean of min(R, 1/R)."""
    r = np.asarray(ratios, dtype=np.float64)
    return float(np.mean(np.minimum(r, 1.0 / r)))


def truth_ratio_utility_stat(ratios: Sequence[float]) -> float:
    """Retain / real authors / world facts: mean of max(0, 1 - R) (true answer preferred)."""
    r = np.asarray(ratios, dtype=np.float64)
    return float(np.mean(np.maximum(0.0, 1.0 - r)))


def forget_quality(unlearned_forget_ratios: Sequence[float], retain_model_forget_ratios: Sequence[float]) -> float:
    """p-value of the two-sample KS test between the two models' forget truth ratios."""
    return float(ks_2samp(np.asarray(unlearned_forget_ratios), np.asarray(retain_model_forget_ratios)).pvalue)


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean; 0 as soon as any value is 0 (the paper's Model Utility convention)."""
    vals = [float(v) for v in values]
    if any(v <= 0.0 for v in vals):
        return 0.0
    return len(vals) / math.fsum(1.0 / v for v in vals)


def model_utility(split_metrics: dict[str, dict[str, float]]) -> float:
    """Harmonic mean of the nine retain / real-authors / world-facts values."""
    return harmonic_mean([split_metrics[s][k] for s in UTILITY_SPLITS for k in UTILITY_STATS])


_ROUGE = None


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L recall of each prediction against its reference (rouge-score, Porter stemmer)."""
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs every scorer it builds
        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [_ROUGE.score(ref, pred)["rougeL"].recall for pred, ref in zip(predictions, references, strict=True)]
