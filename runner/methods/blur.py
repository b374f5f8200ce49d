"""BLUR, bi-level unlearning: the forget objective has priority, the retain gradient yields.

Not a new loss but a new update. With g_f = grad of the forget loss and g_r =
grad of the retain loss over all trainable parameters:

    NPO base:  g = g_r + (gamma - <g_r, g_f> / ||g_f||^2) * g_f
    RMU base:  g = g_f + alpha * (g_r - <g_f, g_r> / ||g_f||^2 * g_f)

In both, the retain gradient loses its component along g_f, so retaining can
never undo forgetting; the forget step size is then set explicitly (gamma, or
the full g_f for RMU). Inner products are taken in float32 over all trainable
parameters together. Cost per step: the two forward/backward passes GradDiff
also pays, plus one extra gradient buffer (g_f).
"""

from __future__ import annotations

import torch

from runner.components import build
from runner.methods.base import ForgetRetainMethod, Method, require_single_process
from runner.methods.rmu import RMU
from runner.options import Range


def combine(
    g_f: list[torch.Tensor], g_r: list[torch.Tensor], base: str, gamma: float, alpha: float
) -> list[torch.Tensor]:
    """BLUR's combined direction, written into ``g_r``'s buffers (no third gradient buffer)."""
    dot = sum((f.float() * r.float()).sum() for f, r in zip(g_f, g_r, strict=True))
    norm_sq = sum(f.float().pow(2).sum() for f in g_f)
    proj = dot / norm_sq if norm_sq > 0 else torch.zeros((), device=dot.device)
    out = []
    for f, r in zip(g_f, g_r, strict=True):
        if base == "rmu":  # g_f + alpha * (g_r - proj * g_f)
            out.append(r.mul_(alpha).add_(f, alpha=float(1.0 - alpha * proj)))
        else:  # g_r + (gamma - proj) * g_f
            out.append(r.add_(f, alpha=float(gamma - proj)))
    return out


class BLUR(Method):
    # the update is written into p.grad by hand: DeepSpeed (every strategy but none, even on one process)
    # keeps its own gradient buffers and partitions, so only the plain trainer sees it (checked at start-up)
    strategies = ("none",)
    strategies_reason = "it writes whole gradients itself, which DeepSpeed's engine does not see"
    option_ranges = {"gamma": Range(low=0, example="1.0")}  # the base's own options: method.base.*

    def __init__(self, base: dict, gamma: float = 1.0):
        # the base is a method config node (conf/method/blur.yaml composes conf/method/npo.yaml into it)
        self.base = build(base, ForgetRetainMethod, "method.base")
        self.base_name = "rmu" if isinstance(self.base, RMU) else "npo"  # which of BLUR's two update rules
        self.gamma = gamma
        self.alpha = float(self.base.alpha)

    def select_trainable(self, model) -> None:
        self.base.select_trainable(model)

    def prepare(self, data) -> None:
        require_single_process("BLUR")
        self.base.prepare(data)

    def loss(self, model, batch):
        """The base objective (what BLUR's update optimises with priority on forgetting), for logging."""
        return self.base.loss(model, batch)

    def backward(self, model, batch, scale: float):
        params = [p for p in model.parameters() if p.requires_grad]
        forget = self.base.forget_term(model, batch)
        g_f = torch.autograd.grad(forget, params, allow_unused=True)
        g_f = [torch.zeros_like(p) if g is None else g for p, g in zip(params, g_f, strict=True)]
        retain = self.base.retain_term(model, batch)
        retain_for_grad = retain if self.base_name == "rmu" else self.alpha * retain
        g_r = torch.autograd.grad(retain_for_grad, params, allow_unused=True)
        g_r = [torch.zeros_like(p) if g is None else g for p, g in zip(params, g_r, strict=True)]
        update = combine(g_f, g_r, self.base_name, self.gamma, self.alpha)
        for p, g in zip(params, update, strict=True):
            g = g.mul_(scale).to(p.dtype)
            p.grad = g if p.grad is None else p.grad.add_(g)
        total = forget.detach() + (self.alpha * retain.detach())
        return total, {"forget": forget.item(), "retain": retain.item()}
