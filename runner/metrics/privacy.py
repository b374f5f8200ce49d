"""Membership inference, PrivLeak and memorisation metrics, as pure functions on per-example arrays.

Definitions follow open-unlearning (``src/evals/metrics/mia``, ``memorization.py``), so that
values are comparable on the same inputs:

- every membership score is loss-like (high = "looks unseen"); the AUC labels forget rows 0 and
  holdout rows 1 (``roc_auc_score``), so a model that memorised the forget set scores near 1 and a
  model that never saw it near 0.5;
- GradNorm is open-unlearning's *negated* mean per-tensor gradient norm, so on it a memorising
  model scores near 0 (a small gradient marks a member), the opposite way to the others;
- PrivLeak compares ``1 - AUC`` of Min-K% with the retain model's: 0 is ideal, about -100 a fully
  memorising model, above 0 a model unlearned past the point of a model that never saw the data.

Each token-level input is one row's answer tokens (teacher-forced), in order.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

MIN_K = 0.4  # fraction of lowest-scoring tokens Min-K% and Min-K%++ average (open-unlearning, MUSE)
VARIANCE_FLOOR = 1e-6  # Min-K%++'s clamp of the vocabulary variance (open-unlearning)
NO_RETAIN_AUC = 0.5  # PrivLeak's reference AUC when there is no retain model or retain log


def _tokens(values, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        # a row with no answer token has no likelihood: callers refuse such rows at config check
        raise ValueError(f"{what} of a row with no answer token is undefined")
    return arr


def loss_score(token_logprobs: Sequence[float]) -> float:
    """LOSS: the mean answer-token NLL."""
    return float(-_tokens(token_logprobs, "LOSS").mean())


def zlib_score(token_logprobs: Sequence[float], text: str) -> float:
    """ZLib: the mean NLL divided by the zlib-compressed length (bytes) of the answer text."""
    return loss_score(token_logprobs) / len(zlib.compress(text.encode("utf-8")))


def min_k_score(token_logprobs: Sequence[float], k: float = MIN_K) -> float:
    """Min-K%: minus the mean of the ``max(1, int(n * k))`` lowest token log-probs."""
    lp = np.sort(_tokens(token_logprobs, "Min-K%"))
    return float(-lp[: max(1, int(lp.size * k))].mean())


def min_k_plus_plus_score(
    token_logprobs: Sequence[float], vocab_mean: Sequence[float], vocab_var: Sequence[float], k: float = MIN_K
) -> float:
    """Min-K%++: Min-K% on ``(log p(x_t) - mu_t) / sigma_t``.

    ``mu_t`` and ``sigma_t^2`` are the mean and variance of ``log p`` under ``p`` over the whole
    vocabulary at position t (``runner.scoring`` computes them chunk by chunk); the variance is
    clamped at 1e-6 first, as in open-unlearning, so a near one-hot position does not divide by 0.
    """
    lp = _tokens(token_logprobs, "Min-K%++")
    sigma = np.sqrt(np.maximum(np.asarray(vocab_var, dtype=np.float64), VARIANCE_FLOOR))
    return min_k_score((lp - np.asarray(vocab_mean, dtype=np.float64)) / sigma, k)


def gradnorm_score(tensor_norms: Sequence[float]) -> float:
    """GradNorm: minus the mean over parameter tensors of each tensor's gradient p-norm (open-unlearning)."""
    return float(-np.mean(np.asarray(tensor_norms, dtype=np.float64)))


def reference_score(model_loss: float, reference_loss: float) -> float:
    """Reference: the model's LOSS minus a reference model's LOSS on the same row."""
    return float(model_loss - reference_loss)


def mia_auc(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """ROC AUC of the scores with forget rows labelled 0 and holdout rows 1 (ties count half); NaN if a side is empty."""
    f = np.asarray(forget_scores, dtype=np.float64)
    h = np.asarray(holdout_scores, dtype=np.float64)
    if f.size == 0 or h.size == 0:
        return float("nan")
    labels = np.concatenate([np.zeros(f.size), np.ones(h.size)])
    return float(roc_auc_score(labels, np.concatenate([f, h])))


def privleak(auc_model: float, auc_retain: float) -> float:
    """((1 - AUC_model) - (1 - AUC_retain)) / (1 - AUC_retain) * 100, on Min-K% AUCs as ``mia_auc`` orients them."""
    ref = 1.0 - auc_retain
    if math.isnan(ref) or ref == 0.0:
        return float("nan")
    return ((1.0 - auc_model) - ref) / ref * 100.0


def exact_memorization(argmax_hits: Sequence[bool]) -> float:
    """Exact Memorization: the fraction of answer tokens whose teacher-forced argmax is the gold token."""
    return float(_tokens(argmax_hits, "Exact Memorization").mean())


def extraction_strength(argmax_hits: Sequence[bool], strict: bool = False) -> float:
    """Extraction Strength: 1 - k/|a| for the smallest k whose suffix a[k:] the argmax predicts entirely.

    open-unlearning's loop stops at k = |a| - 1 without checking that no suffix matched, so a
    wholly wrong answer scores 1/|a|; ``strict`` scores it 0 (k = |a|, the empty suffix).
    """
    hits = _tokens(argmax_hits, "Extraction Strength").astype(bool)
    n = hits.size
    # suffix_ok[k]: every token from k on is predicted; the first such k is the answer
    suffix_ok = np.flip(np.cumprod(np.flip(hits))).astype(bool)
    matched = np.flatnonzero(suffix_ok)
    if not matched.size:  # no suffix predicted: open-unlearning's loop ends at k = |a| - 1
        return 0.0 if strict else 1.0 / n
    return 1.0 - int(matched[0]) / n
