"""Checks on the composed config that Hydra's schema cannot express, and the job's identity."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from runner import attack, coreset, evaluate
from runner.cache import content_key
from runner.errors import ConfigError

# keys that change where and how a job reports, not what it computes
NOT_IN_JOB_KEY = ("paths", "logger")


def _positive(cfg: DictConfig, key: str, fix: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(key, f"must be a positive number, got {value!r}", fix)


def validate(cfg: DictConfig) -> None:
    for block in ("unlearn", "benchmark.finetune"):
        if OmegaConf.select(cfg, block) is None:
            continue
        _positive(cfg, f"{block}.learning_rate", f"set {block}.learning_rate=1e-5 (or another value > 0)")
        _positive(cfg, f"{block}.epochs", f"set {block}.epochs to a positive count")
        _positive(cfg, f"{block}.batch_size", f"set {block}.batch_size to a positive count")
        _positive(cfg, f"{block}.grad_accum", f"set {block}.grad_accum to a positive count")
    if cfg.precision not in ("fp32", "bf16"):
        raise ConfigError("precision", f"`{cfg.precision}` is not supported", "use fp32 or bf16")
    _positive(cfg, "eval.batch_size", "set eval.batch_size to a positive count")
    # the coreset selector and the fine-tuning attack check their own keys (and the attack its data) now,
    # not after hours of fine-tuning and unlearning
    coreset.check_config(cfg)
    attack.check_config(cfg)
    evaluate.check_config(cfg)  # evaluation-only jobs (method=none) and where decoding= applies


def job_key(cfg: DictConfig) -> str:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return content_key({k: v for k, v in resolved.items() if k not in NOT_IN_JOB_KEY})
