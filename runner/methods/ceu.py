"""CE-U, cross-entropy unlearning (Yang et al., 2025, arXiv 2503.01224): forget-only.

On every forget answer token t (after the first ``ignore_first_n_answer_tokens`` of each answer), with
z the model's logits and y_t the gold token:

target_t = softmax(sg(z) with z[y_t] set to -inf)     (sg: no gradient through the target)
loss     = mean_t CE(target_t, softmax(z)) = mean_t -sum_v target_t[v] * log softmax(z)[v]

The target is the model's own distribution with the gold token removed and the rest renormalised, so
the gradient lowers the gold token's probability towards zero and leaves the ranking of every other
token alone: the gradient of the cross-entropy on z is p - target, which is p_y on the gold logit and
-p_v * p_y / (1 - p_y) on every other logit v. No reference model, no retain term.

The first answer tokens are skipped, as the paper's training settings do (a footnote there; open-unlearning's
default 1): an answer's opening tokens often restate the question, and lowering them would garble the
answer's form rather than remove the fact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.data.qa import IGNORE
from runner.errors import ConfigError
from runner.methods.base import Method
from runner.methods.graddiff import answer_logits
from runner.options import Range


def drop_first_answer_tokens(labels: torch.Tensor, n: int) -> torch.Tensor:
    """``labels`` with the first ``n`` scored tokens of each row set to IGNORE."""
    scored = labels != IGNORE
    first = scored & (scored.cumsum(dim=-1) <= n)
    return labels.masked_fill(first, IGNORE)


def ceu_target(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """softmax of the detached (N, V) logits with each row's gold logit at -inf."""
    masked = logits.detach().scatter(-1, targets.unsqueeze(-1), float("-inf"))
    return F.softmax(masked, dim=-1)


def ceu_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the N rows of the cross-entropy of softmax(logits) against ``ceu_target``."""
    if logits.shape[0] == 0:  # every answer token skipped or truncated away: nothing to push
        return logits.sum() * 0.0
    return F.cross_entropy(logits, ceu_target(logits, targets))


class CEU(Method):
    option_ranges = {"ignore_first_n_answer_tokens": Range(low=0, whole=True, example="1")}

    def __init__(self, ignore_first_n_answer_tokens: int = 1):
        n = ignore_first_n_answer_tokens
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ConfigError(
                "method.ignore_first_n_answer_tokens",
                f"must be a whole number >= 0, got {n!r}",
                "use 1 (the paper's and open-unlearning's default) or 0 to score every answer token",
            )
        self.ignore_first_n_answer_tokens = n

    def loss(self, model, batch):
        forget = batch["forget"]
        forget = {**forget, "labels": drop_first_answer_tokens(forget["labels"], self.ignore_first_n_answer_tokens)}
        targets = forget["labels"][:, 1:]
        loss = ceu_loss(answer_logits(model, forget), targets[targets != IGNORE])
        return loss, {"ceu_forget": loss.item()}
