"""MUSE metrics (Shi et al., 2024), as pure functions.

- VerbMem / KnowMem: ROUGE-L F1 between a generation and the reference
  (rouge-score, no stemmer: MUSE's scorer).
- PrivLeak: the Min-K% Prob membership statistic (Shi et al., 2023) on
  forget (members) and holdout (non-members) texts; the AUC of telling them
  apart; and PrivLeak = (AUC_unlearned - AUC_retrain) / AUC_retrain * 100.

AUC orientation follows MUSE's release: the statistic is a loss (the negated
mean of a text's k% lowest token log-probs, so members score *low*) and the
AUC is P(statistic(forget) > statistic(holdout)), ties counting half. A model
that memorised the forget set gets an AUC near 0 and a PrivLeak near -100;
a model that never saw it (the retrained model) about 0.5 and 0; a model
unlearned too far (forget text now less likely than unseen text) above 0.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

_ROUGE = None


def rouge_l_f1(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F1 of each prediction against its reference (rouge-score, no stemming, as in MUSE)."""
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        logging.getLogger("absl").setLevel(logging.WARNING)
        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return [_ROUGE.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references, strict=True)]


def min_k_score(token_logprobs: Sequence[float], k: float = 0.4) -> float:
    """Min-K% Prob as a loss: minus the mean of the ``k`` fraction of lowest token log-probs.

    ``int(n * k)`` tokens are averaged (at least one), as in the Min-K% and
    MUSE code; lower means "more likely seen in training".
    """
    lp = np.sort(np.asarray(token_logprobs, dtype=np.float64))
    if lp.size == 0:
        return float("nan")
    n = max(1, int(lp.size * k))
    return float(-lp[:n].mean())


def auc(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """P(score(forget) > score(holdout)) + P(tie)/2: the ROC AUC with forget as the positive class."""
    f = np.asarray(forget_scores, dtype=np.float64)
    h = np.asarray(holdout_scores, dtype=np.float64)
    if f.size == 0 or h.size == 0:  # no pairs to compare (scikit-learn would raise on a single class)
        return float("nan")
    labels = np.concatenate([np.ones(f.size), np.zeros(h.size)])
    return float(roc_auc_score(labels, np.concatenate([f, h])))


def privleak(auc_unlearned: float, auc_retrain: float) -> float:
    """(AUC_unlearned - AUC_retrain) / AUC_retrain * 100: 0 is ideal, -100 a fully memorising model."""
    if not auc_retrain or math.isnan(auc_retrain):
        return float("nan")
    return (auc_unlearned - auc_retrain) / auc_retrain * 100.0
