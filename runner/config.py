"""Checks on the composed config that Hydra's schema cannot express, and the job's identity."""

from __future__ import annotations

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from runner import attacks, coreset, distributed, evaluate, inputs, robustness, saved_model
from runner.cache import content_key
from runner.errors import ConfigError
from runner.precision import CHOICES as PRECISIONS

# keys that change where and how a job reports, not what it computes
NOT_IN_JOB_KEY = ("paths", "logger")
MAX_SEED = 2**31 - 1  # numpy takes 0 .. 2**32 - 1; a rank adds its index (distributed.seed_process)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(cfg: DictConfig, key: str, fix: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not _is_number(value) or value <= 0:
        raise ConfigError(key, f"must be a positive number, got {value!r}", fix)


def _count(cfg: DictConfig, key: str, fix: str, allow_none: bool = False) -> None:
    """A whole number >= 1 (a float such as 1.5 is refused, not rounded)."""
    value = OmegaConf.select(cfg, key)
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(key, f"must be a positive whole number, got {value!r}", fix)


def _at_least_zero(cfg: DictConfig, key: str, fix: str, at_most: float | None = None) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None:
        return
    if not _is_number(value) or value < 0 or (at_most is not None and value > at_most):
        span = f"between 0 and {at_most}" if at_most is not None else "a number >= 0"
        raise ConfigError(key, f"must be {span}, got {value!r}", fix)


def _seed(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
        raise ConfigError(key, f"must be a whole number from 0 to {MAX_SEED}, got {value!r}", f"set {key}=0")


def _train_block(cfg: DictConfig, block: str) -> None:
    """A trainer's settings (``unlearn``, ``benchmark.finetune``): every value the trainer would misread."""
    _positive(cfg, f"{block}.learning_rate", f"set {block}.learning_rate=1e-5 (or another value > 0)")
    _positive(cfg, f"{block}.epochs", f"set {block}.epochs to a positive count")
    _count(cfg, f"{block}.batch_size", f"set {block}.batch_size to a positive whole number, e.g. 8")
    _count(cfg, f"{block}.grad_accum", f"set {block}.grad_accum to a positive whole number, e.g. 1")
    _count(cfg, f"{block}.max_steps", f"set {block}.max_steps=null to train for {block}.epochs", allow_none=True)
    _at_least_zero(cfg, f"{block}.warmup_ratio", f"set {block}.warmup_ratio between 0 and 1", at_most=1.0)
    _at_least_zero(cfg, f"{block}.weight_decay", f"set {block}.weight_decay >= 0")
    _at_least_zero(cfg, f"{block}.max_grad_norm", f"set {block}.max_grad_norm >= 0 (0: no clipping)")
    if OmegaConf.select(cfg, f"{block}.seed") is not None:
        _seed(cfg, f"{block}.seed")


def validate(cfg: DictConfig) -> None:
    """Every check that needs no data and no model: runs before any stage, in the launcher too."""
    _seed(cfg, "seed")
    if cfg.get("task") == "diffusion_attack":  # the diffusion family's own checks (runner/diffusion/job.py)
        from runner.diffusion.job import check_config as check_diffusion

        _check_precision(cfg)
        return check_diffusion(cfg)
    for block in ("unlearn", "benchmark.finetune", "distill.train"):
        if OmegaConf.select(cfg, block) is None:
            continue
        _train_block(cfg, block)
    change = OmegaConf.select(cfg, "unlearn.max_weight_norm_ratio")
    if change is not None and (not _is_number(change) or change <= 0):
        raise ConfigError(
            "unlearn.max_weight_norm_ratio", f"must be a positive number or null, got {change!r}", "e.g. 10, or null"
        )
    _check_precision(cfg)
    saved_model.check(OmegaConf.select(cfg, "save_model", default="none"))
    _count(cfg, "eval.batch_size", "set eval.batch_size to a positive whole number, e.g. 16")
    check_strategy(cfg)
    # the coreset selector and the fine-tuning attack check their own keys (and the attack its data) now,
    # not after hours of fine-tuning and unlearning
    coreset.check_config(cfg.get("coreset"), cfg.seed)
    attacks.check_config(cfg.get("finetune_attack"))
    robustness.check_config(cfg.get("robustness_attack"))
    evaluate.check_config(cfg)  # evaluation-only jobs (method=none) and where decoding= applies


def _check_precision(cfg: DictConfig) -> None:
    if cfg.precision not in PRECISIONS:
        raise ConfigError(
            "precision", f"`{cfg.precision}` is not supported", "use auto (bf16 where native, else fp32), fp32 or bf16"
        )


def check_strategy(cfg: DictConfig) -> None:
    """The strategy builds (its options are checked) and the method supports it: a method declares
    ``strategies``, the names of the options it runs under (default: all)."""
    strategy = distributed.build_strategy(cfg.get("distributed")).name
    target = OmegaConf.select(cfg, "method._target_")
    if target is None:
        return
    try:
        cls = get_class(target)
    except Exception:  # reported where the method is built, with the builder's message
        return
    supported = tuple(getattr(cls, "strategies", None) or distributed.STRATEGIES)
    if strategy not in supported:
        name = OmegaConf.select(cfg, "method.name") or cls.__name__
        why = getattr(cls, "strategies_reason", "")
        raise ConfigError(
            "distributed",
            f"method {name} cannot run under distributed={strategy}{f' ({why})' if why else ''}",
            f"use distributed={' or '.join(supported)} with method {name}",
        )


def job_key(cfg: DictConfig) -> str:
    """The config (less where it reports) and the content identity of every input it reads (runner/inputs.py)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    plain = {k: v for k, v in resolved.items() if k not in NOT_IN_JOB_KEY}
    return content_key({**plain, "_inputs": inputs.identity(cfg)})


def config_key(cfg: DictConfig) -> str:
    """The key of the config alone: a record for a job that stopped before its inputs could be read."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return content_key({k: v for k, v in resolved.items() if k not in NOT_IN_JOB_KEY})
