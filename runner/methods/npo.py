"""Negative Preference Optimization (Zhang et al., 2024).

loss = -(2/beta) * E_{D_f} log sigmoid(-beta * (log pi_theta(y|x) - log pi_theta0(y|x)))
       + alpha * E_{D_r} l(y|x)

Sequence log-probs are sums over answer tokens. log pi_theta0 of every forget
example is computed once in ``prepare`` (no second model in memory, no
reference forward per step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.methods.base import ForgetRetainMethod
from runner.methods.theta0 import forget_reference_logprobs
from runner.options import Range
from runner.scoring import mean_nll, sequence_logprob


def npo_forget_loss(logp: torch.Tensor, logp_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """-(2/beta) * mean log sigmoid(-beta * (logp - logp_ref))."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - logp_ref)).mean()


class NPO(ForgetRetainMethod):
    forget_name = "npo_forget"
    option_ranges = {"beta": Range(low=0, low_open=True, example="0.1")}  # the loss divides by beta

    def __init__(self, beta: float = 0.1, alpha: float = 1.0, gamma: float = 1.0):
        self.beta, self.alpha, self.gamma = beta, alpha, gamma
        self.forget_logprobs_ref: torch.Tensor | None = None

    def prepare(self, data) -> None:
        self.forget_logprobs_ref = forget_reference_logprobs(data)

    def forget_term(self, model, batch) -> torch.Tensor:
        forget = batch["forget"]
        logp, _ = sequence_logprob(model, forget)
        logp_ref = self.forget_logprobs_ref.to(logp.device)[forget["index"]]
        return npo_forget_loss(logp, logp_ref, self.beta)

    def retain_term(self, model, batch) -> torch.Tensor:
        return mean_nll(model, batch["retain"])
