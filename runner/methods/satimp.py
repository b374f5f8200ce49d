"""SatImp (Yang et al., 2025, "Exploring criteria of loss reweighting to enhance LLM unlearning"): GradDiff whose
forget term weights each answer token by its saturation and its importance, both from the token's probability.

loss = gamma * E_{D_f} mean_t [ w_t * log p_theta(y_t | x, y_<t) ] + alpha * (E_{D_r} l  or  KL to theta_0),
w_t  = p_t^beta1 * (1 - p_t)^beta2, detached (a weight, not part of the objective)

p_t^beta1 (saturation, WGA's weight) fades the ascent on tokens already unlikely; (1 - p_t)^beta2
(importance) fades it on tokens the model is sure of, which are mostly the copied, uninformative ones,
so the ascent concentrates on tokens in between. beta2 = 0 is WGA with beta = beta1.

Defaults: open-unlearning's configs/trainer/SatImp.yaml (beta1 5, beta2 1, gamma 0.1, alpha 1, retain NLL;
it trains with lr 1e-5 for 5 epochs). The mean runs over every answer token of the forget batch, as WGA's.
"""

from __future__ import annotations

import torch

from runner.errors import ConfigError
from runner.methods.base import sum_parts
from runner.methods.graddiff import GradDiff
from runner.methods.wga import wga_weights
from runner.options import Range
from runner.scoring import token_nll


def satimp_weights(token_logp: torch.Tensor, beta1: float, beta2: float) -> torch.Tensor:
    """w_t = p_t^beta1 * (1 - p_t)^beta2, with no gradient."""
    p = torch.exp(token_logp.detach())
    return wga_weights(token_logp, beta1) * (1 - p) ** beta2


def satimp_forget_loss(token_logp: torch.Tensor, beta1: float, beta2: float) -> torch.Tensor:
    """mean_t w_t * log p_t over a flat tensor of answer-token log-probs (minimising it raises the NLL)."""
    return (satimp_weights(token_logp, beta1, beta2) * token_logp).sum() / max(token_logp.numel(), 1)


class SatImp(GradDiff):
    option_ranges = {"beta1": Range(low=0, example="5.0"), "beta2": Range(low=0, example="1.0")}

    def __init__(
        self, beta1: float = 5.0, beta2: float = 1.0, gamma: float = 0.1, alpha: float = 1.0, retain_loss: str = "nll"
    ):
        super().__init__(gamma=gamma, alpha=alpha, retain_loss=retain_loss)
        for name, value in (("beta1", beta1), ("beta2", beta2)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(
                    f"method.{name}",
                    f"must be a number >= 0, got {value!r}",
                    "an exponent of a probability weight; open-unlearning: beta1 5, beta2 1",
                )
        self.beta1, self.beta2 = float(beta1), float(beta2)

    def forget_term(self, model, forget: dict) -> torch.Tensor:
        nll, mask = token_nll(model, forget)
        return satimp_forget_loss(-nll[mask], self.beta1, self.beta2)

    def loss(self, model, batch):
        return sum_parts(SatImp.loss_parts(self, model, batch))  # its own split, as GradDiff's

    def loss_parts(self, model, batch):
        forget = self.forget_term(model, batch["forget"])
        yield self.gamma * forget, {"satimp_forget": forget.item()}
        retain = self.retain_term(model, batch["retain"])
        yield self.alpha * retain, {f"retain_{self.retain_loss}": retain.item()}
