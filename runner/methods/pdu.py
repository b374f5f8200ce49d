"""PDU, primal-dual unlearning (Entesari et al., 2025, "Constrained entropic unlearning: a primal-dual framework
for LLMs"): minimise the forget loss subject to the retain loss staying under epsilon, with the retain weight
as the Lagrange multiplier (the dual variable lambda) of that constraint:

loss_k    = gamma * F(theta) + lambda_k * (R(theta) - eps)
lambda_k+1 = max(0, lambda_k + eta * (R(theta_k) - eps))     per step, or once per epoch (the epoch's mean)

lambda starts at ``alpha`` and grows while the retain loss R is above eps (the constraint is violated),
shrinks towards 0 while it is below. During the first ``dual_warmup_epochs`` epochs lambda stays at alpha.

F is open-unlearning's forget loss for PDU: the squared gap between the largest logit and the mean logit,
averaged over the forget answer positions, (max_v z_v - mean_v z_v)^2, which is 0 when the distribution is
flat (maximum entropy): the forget answers become uninformative rather than pushed to a wrong token.
R is GradDiff's retain term (NLL, or KL to theta_0).

eps (``retain_loss_eps``) has no default in open-unlearning (it must be given). Here null means the retain loss
theta_0 already has: the token-mean retain NLL of the unlearning model before its first step (0 for the KL
term), so the constraint reads "no worse on the retain set than before".
"""

from __future__ import annotations

import logging

import torch

from runner.errors import ConfigError
from runner.methods.base import sum_parts
from runner.methods.graddiff import GradDiff, answer_logits
from runner.options import Range
from runner.scoring import score_sequences
from runner.training import PairedDataset, collate_pairs

log = logging.getLogger(__name__)
UPON = ("step", "epoch")


def logit_gap_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the N rows of (max_v z - mean_v z)^2, for (N, V) logits."""
    if logits.shape[0] == 0:  # no answer token in the batch (all truncated away)
        return logits.sum() * 0.0
    return ((logits.max(dim=-1).values - logits.mean(dim=-1)) ** 2).mean()


def dual_update(dual: float, violation: float, step_size: float) -> float:
    """lambda + eta * (R - eps), projected onto lambda >= 0."""
    return max(0.0, dual + step_size * violation)


class _EpochSignal(PairedDataset):
    """The shared forget / retain pairs; the trainer's ``set_epoch`` at each epoch's start also tells PDU."""

    def __init__(self, forget, retain, seed, on_epoch):
        super().__init__(forget, retain, seed)
        self.on_epoch = on_epoch

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.on_epoch(epoch)


class PDU(GradDiff):
    option_ranges = {
        "dual_step_size": Range(low=0, example="1.0"),
        "dual_warmup_epochs": Range(low=0, example="5"),
        "retain_loss_eps": Range(optional=True, example="null (theta_0's own retain loss)"),
    }

    def __init__(
        self,
        retain_loss_eps: float | None = None,
        primal_dual: bool = True,
        dual_step_size: float = 1.0,
        dual_update_upon: str = "step",
        dual_warmup_epochs: int = 5,
        gamma: float = 1.0,
        alpha: float = 1.0,
        retain_loss: str = "nll",
    ):
        super().__init__(gamma=gamma, alpha=alpha, retain_loss=retain_loss)
        if dual_update_upon not in UPON:
            raise ConfigError(
                "method.dual_update_upon", f"`{dual_update_upon}` is not a dual update", "use step or epoch"
            )
        checks = (
            ("dual_step_size", dual_step_size, isinstance(dual_step_size, (int, float)) and dual_step_size >= 0),
            ("alpha", alpha, isinstance(alpha, (int, float)) and alpha >= 0),
            ("dual_warmup_epochs", dual_warmup_epochs, isinstance(dual_warmup_epochs, int) and dual_warmup_epochs >= 0),
            ("retain_loss_eps", retain_loss_eps, retain_loss_eps is None or isinstance(retain_loss_eps, (int, float))),
        )
        fixes = {
            "dual_step_size": "a step size >= 0 (open-unlearning: 1.0)",
            "alpha": "the dual variable's start, >= 0 (a Lagrange multiplier)",
            "dual_warmup_epochs": "a whole number of epochs >= 0 (open-unlearning: 5)",
            "retain_loss_eps": "a number, or null for theta_0's own retain loss",
        }
        for name, value, ok in checks:
            if isinstance(value, bool) or not ok:
                raise ConfigError(f"method.{name}", f"got {value!r}", fixes[name])
        self.eps = None if retain_loss_eps is None else float(retain_loss_eps)
        self.primal_dual, self.step_size = bool(primal_dual), float(dual_step_size)
        self.upon, self.warmup = dual_update_upon, dual_warmup_epochs
        self.dual = float(alpha)  # lambda, the retain weight
        self.updating = dual_warmup_epochs == 0
        self._epoch_violations: list[float] = []

    def prepare(self, data) -> None:
        super().prepare(data)
        if self.eps is None:
            self.eps = 0.0 if self.retain_loss == "kl" else self._theta0_retain_nll(data)
            log.info("PDU: retain_loss_eps = %.4f, theta_0's retain %s", self.eps, self.retain_loss)

    @staticmethod
    def _theta0_retain_nll(data) -> float:
        scores = score_sequences(data.model, data.retain, data.pad_id, data.eval_batch_size, data.precision, "PDU eps")
        return float(scores[:, 0].sum() / max(scores[:, 1].sum(), 1))

    def unlearn(self, model, data, train, train_cfg) -> dict:
        if self.primal_dual and self.warmup >= train_cfg.epochs:
            log.warning(
                "PDU: dual_warmup_epochs %d >= the %d unlearning epochs: the dual variable never moves "
                "(lower method.dual_warmup_epochs)",
                self.warmup,
                train_cfg.epochs,
            )
        stats = train(
            model,
            _EpochSignal(data.forget, data.retain, data.seed, self.epoch_begins),
            collate_pairs(data.pad_id),
            self.loss,
            train_cfg,
            stage="unlearn",
            parts_fn=self.loss_parts,
        )
        return {**stats, "dual_end": round(self.dual, 6), "retain_loss_eps": self.eps}

    def epoch_begins(self, epoch: int) -> None:
        """At the start of epoch ``epoch`` (0-based), ``epoch`` epochs are complete: end the warm-up, and in
        per-epoch mode move lambda by the mean violation of the epoch just done."""
        if epoch == 0 or not self.primal_dual:
            return
        if epoch >= self.warmup:
            self.updating = True
            if self.upon == "epoch" and self._epoch_violations:
                mean = sum(self._epoch_violations) / len(self._epoch_violations)
                self.dual = dual_update(self.dual, mean, self.step_size)
        self._epoch_violations = []

    def forget_term(self, model, forget: dict) -> torch.Tensor:
        return logit_gap_loss(answer_logits(model, forget))

    def loss(self, model, batch):
        return sum_parts(PDU.loss_parts(self, model, batch))  # its own split, as GradDiff's

    def loss_parts(self, model, batch):
        forget = self.forget_term(model, batch["forget"])
        yield self.gamma * forget, {"pdu_forget": forget.item()}
        retain = self.retain_term(model, batch["retain"])
        violation = retain.item() - self.eps
        yield self.dual * (retain - self.eps), {f"retain_{self.retain_loss}": retain.item(), "pdu_dual": self.dual}
        # the step's loss used lambda_k; lambda_k+1 follows from this step's retain loss
        self._epoch_violations.append(violation)
        if self.primal_dual and self.updating and self.upon == "step":
            self.dual = dual_update(self.dual, violation, self.step_size)
