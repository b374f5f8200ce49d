"""Weighted gradient ascent (WGA): gradient ascent whose token weights fade once a token is unlikely.

loss = E_{D_f} mean_t [ w_t * log p_theta(y_t | x, y_<t) ] + alpha * E_{D_r} l(y|x),
w_t  = p_theta(y_t | x, y_<t)^beta = exp(-beta * nll_t), detached (a weight, not part of the objective)

so the gradient is sum_t w_t * grad log p_t / N: plain gradient ascent on the
tokens the model still predicts, and almost nothing on those already
forgotten (p_t -> 0), which keeps the ascent from diverging.

Averaging: the forget term is the mean over all answer tokens of the forget
batch (N = their count), the same convention as ``mean_nll`` and hence as GA
and GradDiff here, rather than a per-sequence sum; the learning rates of GA
therefore carry over. beta = 0 is exactly token-averaged gradient ascent.
"""

from __future__ import annotations

import torch

from runner.methods.base import ForgetRetainMethod
from runner.options import Range
from runner.scoring import mean_nll, token_nll


def wga_weights(token_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """w_t = p_t^beta = exp(beta * log p_t), with no gradient."""
    return torch.exp(beta * token_logp.detach())


def wga_forget_loss(token_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """mean_t w_t * log p_t over a flat tensor of answer-token log-probs (minimising it raises the NLL)."""
    return (wga_weights(token_logp, beta) * token_logp).sum() / max(token_logp.numel(), 1)


class WGA(ForgetRetainMethod):
    forget_name = "wga_forget"
    option_ranges = {"beta": Range(low=0, example="1.0")}  # 0: plain gradient ascent; < 0 weights up the forgotten

    def __init__(self, beta: float = 1.0, alpha: float = 1.0):
        self.beta, self.alpha = beta, alpha

    def forget_term(self, model, batch) -> torch.Tensor:
        nll, mask = token_nll(model, batch["forget"])
        return wga_forget_loss(-nll[mask], self.beta)

    def retain_term(self, model, batch) -> torch.Tensor:
        return mean_nll(model, batch["retain"])
