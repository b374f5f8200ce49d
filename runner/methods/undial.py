"""UNDIAL: self-distillation towards the reference with the gold token pushed down (Dong et al., 2024).

On every forget answer token t, with z_theta0 the reference's logits, z_theta
the model's and y_t the gold token:

target_t = softmax(z_theta0 - beta * onehot(y_t))
loss     = mean_t KL(target_t || softmax(z_theta))  [+ alpha * E_{D_r} l(y|x)]

The mean runs over all answer tokens of the forget batch. The target keeps the
reference's ranking of every other token and only lowers the gold one, so the
model unlearns the fact without the collapse of gradient ascent. The original
method has no retain term: ``alpha`` defaults to 0, and then the retain batch
is not even run through the model.

The reference logits come from the model itself run as theta_0 under
``OriginalWeights.active()`` (a pointer swap captured in ``prepare``, no model
copy), once per step, and only at answer positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.data.qa import IGNORE
from runner.methods.base import ForgetRetainMethod
from runner.methods.graddiff import answer_logits, kl_to_reference
from runner.methods.theta0 import OriginalWeights
from runner.options import Range
from runner.scoring import mean_nll


def undial_target_logits(ref_logits: torch.Tensor, targets: torch.Tensor, beta: float) -> torch.Tensor:
    """z_theta0 - beta * onehot(y): (N, V) reference logits with each row's gold logit lowered by beta."""
    return ref_logits - beta * F.one_hot(targets, ref_logits.shape[-1]).to(ref_logits.dtype)


def undial_loss(logits: torch.Tensor, ref_logits: torch.Tensor, targets: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean over the N rows of KL(softmax(z_theta0 - beta * onehot(y)) || softmax(z_theta))."""
    if logits.shape[0] == 0:  # no answer token in the batch (all truncated away)
        return logits.sum() * 0.0
    return kl_to_reference(undial_target_logits(ref_logits.detach(), targets, beta), logits)


class UNDIAL(ForgetRetainMethod):
    forget_name = "undial_kl"
    option_ranges = {"beta": Range(low=0, example="10.0")}  # how far the gold logit is lowered

    def __init__(self, beta: float = 10.0, alpha: float = 0.0):
        self.beta, self.alpha = beta, alpha
        self.original: OriginalWeights | None = None

    def prepare(self, data) -> None:
        self.original = OriginalWeights(data.model)

    def forget_term(self, model, batch) -> torch.Tensor:
        forget = batch["forget"]
        with self.original.active():
            ref_logits = answer_logits(model, forget)
        targets = forget["labels"][:, 1:]
        targets = targets[targets != IGNORE]
        return undial_loss(answer_logits(model, forget), ref_logits, targets, self.beta)

    def retain_term(self, model, batch) -> torch.Tensor:
        return mean_nll(model, batch["retain"])
