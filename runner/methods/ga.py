"""Gradient ascent: maximise the forget NLL, loss = -E_{D_f} l(y|x)."""

from __future__ import annotations

from runner.methods.base import Method
from runner.scoring import mean_nll


class GradientAscent(Method):
    """``l`` is the token-averaged NLL over the batch's answer tokens, as in the TOFU reference code."""

    def loss(self, model, batch):
        forget_nll = mean_nll(model, batch["forget"])
        return -forget_nll, {"forget_nll": forget_nll.item()}
