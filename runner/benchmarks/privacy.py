"""The privacy and memorisation half of a TOFU or MUSE evaluation, from passes the evaluation shares.

Per row of the forget set (members) and the holdout set (non-members), from the token statistics
of the teacher-forced pass (``runner.scoring.head_token_stats``): the LOSS, ZLib, Min-K% and
Min-K%++ membership scores, Exact Memorization and Extraction Strength (runner.metrics.privacy).
GradNorm needs a backward pass per row and Reference the retain model's LOSS on the same rows
(read from the retain model's evaluation in ``summarize``), so only they cost more than arithmetic.

Record layout (the interface a retain-model log must supply; docs/metrics.md):
``per_example.<model>.forget.mia_<attack>`` and ``per_example.<model>.holdout.mia_<attack>``
hold the per-row scores, ``evaluation.<model>.mia.<attack>`` the AUC (forget 0, holdout 1).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from runner.metrics import privacy as P
from runner.scoring import autocast, token_nll, unwrap

log = logging.getLogger(__name__)

# attacks scored from the shared pass, then the ones that cost a pass of their own or another model
SHARED_ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus")
GRADNORM_P = {"1": 1.0, "2": 2.0, "inf": math.inf}


def row_scores(stats: list[dict], texts: list[str], k: float, strict: bool) -> dict[str, list[float]]:
    """Every shared-pass metric of each row: ``stats`` from the scoring pass, ``texts`` the scored answers."""
    out: dict[str, list[float]] = {f"mia_{a}": [] for a in SHARED_ATTACKS}
    out |= {"exact_memorization": [], "extraction_strength": []}
    for s, text in zip(stats, texts, strict=True):
        out["mia_loss"].append(P.loss_score(s["logprob"]))
        out["mia_zlib"].append(P.zlib_score(s["logprob"], text))
        out["mia_min_k"].append(P.min_k_score(s["logprob"], k))
        out["mia_min_k_plus_plus"].append(P.min_k_plus_plus_score(s["logprob"], s["vocab_mean"], s["vocab_var"], k))
        out["exact_memorization"].append(P.exact_memorization(s["hit"]))
        out["extraction_strength"].append(P.extraction_strength(s["hit"], strict))
    return out


def gradnorm_scores(model, encoded: list[dict], norms: list[str], precision: str) -> dict[str, list[float]]:
    """open-unlearning's GradNorm per row and p: minus the mean over parameter tensors of ``||grad mean NLL||_p``.

    One backward per row (the gradient of each row's own mean NLL), through ``torch.autograd.grad``
    so the model's ``.grad`` buffers are never touched; every parameter takes part, frozen ones too
    (their ``requires_grad`` is restored afterwards).
    """
    m = unwrap(model)
    device = next(m.parameters()).device
    params = list(m.parameters())
    frozen = [p for p in params if not p.requires_grad]
    out: dict[str, list[float]] = {f"mia_gradnorm_{p}": [] for p in norms}
    try:
        for p in frozen:
            p.requires_grad_(True)
        for e in encoded:
            batch = {
                "input_ids": torch.tensor([e["input_ids"]], device=device),
                "attention_mask": torch.ones(1, len(e["input_ids"]), dtype=torch.long, device=device),
                "labels": torch.tensor([e["labels"]], device=device),
            }
            with autocast(precision, device):
                nll, mask = token_nll(m, batch)
            grads = torch.autograd.grad(nll.sum() / mask.sum(), params, allow_unused=True)
            grads = [g.float() for g in grads if g is not None]
            for p in norms:
                tensor_norms = torch.stack([torch.linalg.vector_norm(g, ord=GRADNORM_P[p]) for g in grads])
                out[f"mia_gradnorm_{p}"].append(P.gradnorm_score(tensor_norms.cpu().numpy()))
    finally:
        for p in frozen:
            p.requires_grad_(False)
    return out


def aucs(forget: dict[str, list[float]], holdout: dict[str, list[float]]) -> dict[str, float]:
    """The AUC of every ``mia_*`` score present on both sides, keyed by attack name."""
    return {
        key.removeprefix("mia_"): P.mia_auc(forget[key], holdout[key])
        for key in forget
        if key.startswith("mia_") and key in holdout
    }


def summarize(evaluation: dict, baselines: dict[str, dict], with_privleak: bool = True) -> dict[str, float]:
    """PrivLeak, the Reference attack's AUC, each MIA AUC, Exact Memorization and Extraction Strength of one model.

    PrivLeak's reference is the retain model's Min-K% AUC; with no retain model the reference is
    0.5 and the evaluation's ``mia`` suite says so (``privleak_reference``), and a warning is logged.
    ``with_privleak=False`` leaves PrivLeak to the caller (MUSE computes its own).
    """
    suites, per = evaluation["suites"], evaluation.get("per_example", {})
    forget = per.get("forget", {})
    out = {key: float(np.mean(forget[key])) for key in ("exact_memorization", "extraction_strength") if key in forget}
    if "clean" in suites.get("gibberish", {}):
        out["gibberish"] = suites["gibberish"]["clean"]
    mia = suites.get("mia")
    if not mia:  # no holdout rows: nothing to compare members with
        return out
    retain = baselines.get("retain")
    if with_privleak:
        out["privleak"] = P.privleak(mia["min_k"], _privleak_reference(mia, retain))
    if retain is not None and "holdout" in retain["per_example"]:
        ref = {
            part: np.asarray(per[part]["mia_loss"]) - np.asarray(retain["per_example"][part]["mia_loss"])
            for part in ("forget", "holdout")
        }
        mia["reference"] = P.mia_auc(ref["forget"], ref["holdout"])
    out |= {f"mia_{name}": value for name, value in mia.items() if isinstance(value, float)}
    return out


def _privleak_reference(mia: dict, retain: dict | None) -> float:
    """The retain model's Min-K% AUC, or 0.5 with a note in ``mia`` and a warning when there is none."""
    if retain is not None and "mia" in retain["suites"]:
        mia["privleak_reference"] = "retain model"
        return retain["suites"]["mia"]["min_k"]
    mia["privleak_reference"] = "none: no retain model or retain log, reference AUC 0.5"
    log.warning("PrivLeak: no retain model or retain log, so the reference AUC is 0.5")
    return P.NO_RETAIN_AUC
