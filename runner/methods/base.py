"""Shared pieces of the methods: the usual forget + retain combination, and base methods for BLUR / ILU."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from runner.errors import ConfigError

METHOD_CONF = Path(__file__).resolve().parents[2] / "conf" / "method"
BASES = ("npo", "rmu")


def build_base(name: str, overrides: dict | None, key: str):
    """The method ``conf/method/<name>.yaml`` with ``overrides`` merged in.

    A base must split its objective into ``forget_term`` and ``retain_term``
    (unweighted) so the wrapper can combine them.
    """
    if name not in BASES:
        raise ConfigError(key, f"`{name}` cannot be a base method", f"use one of {', '.join(BASES)}")
    cfg = OmegaConf.merge(OmegaConf.load(METHOD_CONF / f"{name}.yaml"), overrides or {})
    return instantiate(cfg)


def require_single_process(method: str) -> None:
    """Stop at start-up where a method's whole-gradient arithmetic would silently see one rank's shard."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise ConfigError(
            "distributed",
            f"{method} works on whole gradients of the trainable parameters; the multi-process path "
            "does not reduce them across ranks",
            f"run {method} with distributed=none (one process)",
        )


def forget_and_retain(method, model, batch, forget_name: str, gamma: float = 1.0):
    """gamma * forget_term + alpha * retain_term, the shape most methods share; the retain pass is skipped at alpha=0."""
    forget = method.forget_term(model, batch)
    loss, terms = gamma * forget, {forget_name: forget.item()}
    if method.alpha != 0:
        retain = method.retain_term(model, batch)
        loss = loss + method.alpha * retain
        terms["retain_nll"] = retain.item()
    return loss, terms
