"""SimNPO: NPO without a reference model, on length-normalised log-probs (Fan et al., 2024).

loss = gamma * ( -(2/beta) * E_{D_f} log sigmoid(-(beta/|y|) * log pi_theta(y|x) - gamma_m) )
       + alpha * E_{D_r} l(y|x)

log pi_theta(y|x) is the sum over answer tokens and |y| the number of answer
tokens, i.e. the positions whose label is not -100, the closing EOS included:
this is how the reference implementation normalises by length. ``gamma_m`` is
the reward margin (0 in the TOFU runs), ``gamma`` the weight of the forget
term and ``alpha`` that of the retain NLL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.methods.base import ForgetRetainMethod
from runner.options import Range
from runner.scoring import mean_nll, sequence_logprob


def simnpo_forget_loss(logp: torch.Tensor, lengths: torch.Tensor, beta: float, gamma_m: float) -> torch.Tensor:
    """-(2/beta) * mean log sigmoid(-(beta/|y|) * logp - gamma_m), one ``logp`` and ``|y|`` per sequence."""
    per_token = logp / lengths.to(logp.dtype).clamp(min=1)
    return -(2.0 / beta) * F.logsigmoid(-beta * per_token - gamma_m).mean()


class SimNPO(ForgetRetainMethod):
    forget_name = "simnpo_forget"
    option_ranges = {
        "beta": Range(low=0, low_open=True, example="2.5"),  # the loss divides by beta
        "gamma_m": Range(example="0.0"),
    }

    def __init__(self, beta: float = 2.5, gamma_m: float = 0.0, gamma: float = 0.125, alpha: float = 1.0):
        self.beta, self.gamma_m, self.gamma, self.alpha = beta, gamma_m, gamma, alpha

    def forget_term(self, model, batch) -> torch.Tensor:
        logp, lengths = sequence_logprob(model, batch["forget"])
        return simnpo_forget_loss(logp, lengths, self.beta, self.gamma_m)

    def retain_term(self, model, batch) -> torch.Tensor:
        return mean_nll(model, batch["retain"])
