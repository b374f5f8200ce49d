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
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from runner import row_gradients
from runner.data.qa import IGNORE, pad_sequences
from runner.metrics import privacy as P
from runner.scoring import autocast, unwrap

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


def gradnorm_scores(
    model, encoded: list[dict], norms: list[str], precision: str, rows_per_call: int
) -> dict[str, list[float]]:
    """open-unlearning's GradNorm per row and p: minus the mean over parameter tensors of ``||grad mean NLL||_p``.

    Each row's gradient is its own (of its own mean answer NLL), over every parameter, frozen ones
    too; the model's ``.grad`` buffers and ``requires_grad`` flags are never touched. ``rows_per_call``
    rows, length-sorted and right-padded, share one forward and one backward: per-row gradients
    come from module hooks (``runner.row_gradients``: one module's row gradient at a time), or for a
    model those rules do not cover from ``vmap(grad(...))``, which holds a whole-model gradient per
    row (docs/metrics.md, cost).
    """
    m = unwrap(model)
    device = next(m.parameters()).device
    # named_parameters lists a tied LM head once (under the input embedding's name): functional_call ties it back
    params = dict(m.named_parameters())
    ords = [GRADNORM_P[p] for p in norms]
    out: dict[str, list[float]] = {f"mia_gradnorm_{p}": [0.0] * len(encoded) for p in norms}
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    hooks = row_gradients.supported(m)
    was_training = m.training
    m.eval()  # no dropout: the gradient of the model as it is
    try:
        for start in range(0, len(order), rows_per_call):
            idx = order[start : start + rows_per_call]
            inputs = [t.to(device) for t in _answer_positions([encoded[i] for i in idx])]
            with autocast(precision, device):
                tensor_norms = _hooked_norms(m, params, inputs, ords) if hooks else None
                if tensor_norms is None:
                    hooks = False
                    tensor_norms = _vmap_norms(m, params, inputs, ords)
            for k, p in enumerate(norms):
                for row, i in enumerate(idx):
                    out[f"mia_gradnorm_{p}"][i] = P.gradnorm_score(tensor_norms[row, :, k].numpy())
    finally:
        m.train(was_training)
    return out


def _hooked_norms(m, params, inputs, ords) -> torch.Tensor | None:
    """(rows, tensors, ords) from one batched pass with module hooks; None where the model has a
    module the hooks cannot take apart (the caller then uses vmap)."""
    ids, positions, targets, weights = inputs
    # the LM head runs on the span of positions that hold some row's answer, not the whole sequence
    lo, hi = int(positions[weights > 0].min()), int(positions[weights > 0].max()) + 1

    def row_losses(call, _batch):
        logits = call(input_ids=ids, use_cache=False, logits_to_keep=torch.arange(lo, hi, device=ids.device)).logits
        picked = logits.gather(1, (positions - lo).clamp(min=0)[..., None].expand(-1, -1, logits.shape[-1]))
        nll = F.cross_entropy(picked.float().flatten(0, 1), targets.flatten(), reduction="none").view_as(weights)
        return (nll * weights).sum(1) / weights.sum(1)

    try:
        return row_gradients.row_gradient_norms(m, params, row_losses, {}, ords)
    except row_gradients.Unsupported as e:
        log.info("GradNorm: %s; per-row gradients through vmap instead", e)
        return None


def _vmap_norms(m, params, inputs, ords) -> torch.Tensor:
    """(rows, tensors, ords) through ``vmap(grad(...))``: a whole-model gradient per row of the call."""
    per_call = vmap(grad(_row_mean_nll(m)), in_dims=(None, 0, 0, 0, 0))
    with sdpa_kernel(SDPBackend.MATH):
        grads = per_call({n: p.detach() for n, p in params.items()}, *inputs)
    return torch.stack([row_gradients.row_norms(g.flatten(1), ords) for g in grads.values()], dim=1).double().cpu()


def _row_mean_nll(m):
    """One row's mean answer NLL as a function of the parameters, for ``vmap(grad(...))``.

    The LM head runs only at the answer positions (``logits_to_keep``), as ``runner.scoring`` does.
    No attention mask: under the causal mask no real token attends to the right padding, and a mask
    would bring data-dependent branches into vmap; the math attention kernel is the one with a
    batching rule.
    """

    def mean_nll(params, input_ids, positions, targets, weights):
        kwargs = {"input_ids": input_ids[None], "use_cache": False, "logits_to_keep": positions}
        logits = functional_call(m, params, args=(), kwargs=kwargs).logits[0]
        nll = F.cross_entropy(logits.float(), targets, reduction="none")
        return (nll * weights).sum() / weights.sum()

    return mean_nll


def _answer_positions(rows: list[dict]) -> tuple[torch.Tensor, ...]:
    """Right-padded input ids, and per row the positions that predict a labelled token, those tokens
    and 1/0 weights (0 on padding), padded to the longest row's count."""
    ids = pad_sequences([r["input_ids"] for r in rows], 0)
    scored = [[t for t in range(len(r["labels"]) - 1) if r["labels"][t + 1] != IGNORE] for r in rows]
    positions = pad_sequences(scored, 0)
    targets = pad_sequences([[r["labels"][t + 1] for t in s] for r, s in zip(rows, scored, strict=True)], 0)
    weights = pad_sequences([[1] * len(s) for s in scored], 0).float()
    return ids, positions, targets, weights


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
