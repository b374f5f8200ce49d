"""Gradient difference: -gamma * E_{D_f} l + alpha * (E_{D_r} l  or  KL(pi_theta0 || pi_theta) on D_r)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.data.qa import IGNORE
from runner.errors import ConfigError
from runner.methods.base import Method, sum_parts
from runner.methods.theta0 import OriginalWeights
from runner.options import Range
from runner.packing import last_hidden_state
from runner.scoring import mean_nll, unwrap


def answer_logits(model, batch: dict) -> torch.Tensor:
    """Logits at the positions that predict an answer token, (N_tokens, V)."""
    m = unwrap(model)
    hidden = last_hidden_state(m.base_model, batch["input_ids"], batch["attention_mask"])
    mask = batch["labels"][:, 1:] != IGNORE
    return m.get_output_embeddings()(hidden[:, :-1][mask]).float()


def kl_to_reference(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of KL(p_ref || p) = sum_v p_ref (log p_ref - log p)."""
    return F.kl_div(F.log_softmax(logits, -1), F.log_softmax(ref_logits, -1), log_target=True, reduction="batchmean")


class GradDiff(Method):
    option_ranges = {"gamma": Range(low=0, example="1.0"), "alpha": Range(low=0, example="1.0")}

    def __init__(self, gamma: float = 1.0, alpha: float = 1.0, retain_loss: str = "nll"):
        if retain_loss not in ("nll", "kl"):
            raise ConfigError("method.retain_loss", f"`{retain_loss}` is not a retain loss", "use nll or kl")
        self.gamma, self.alpha, self.retain_loss = gamma, alpha, retain_loss
        self.original: OriginalWeights | None = None

    def prepare(self, data) -> None:
        if self.retain_loss == "kl":
            self.original = OriginalWeights(data.model)

    def retain_term(self, model, retain: dict) -> torch.Tensor:
        if self.retain_loss == "nll":
            return mean_nll(model, retain)
        with self.original.active():
            ref_logits = answer_logits(model, retain)
        return kl_to_reference(ref_logits, answer_logits(model, retain))

    def loss(self, model, batch):
        return sum_parts(GradDiff.loss_parts(self, model, batch))  # its own split, even where a subclass redefines loss

    def loss_parts(self, model, batch):
        forget_nll = mean_nll(model, batch["forget"])
        yield -self.gamma * forget_nll, {"forget_nll": forget_nll.item()}
        retain = self.retain_term(model, batch["retain"])
        yield self.alpha * retain, {f"retain_{self.retain_loss}": retain.item()}
