"""Checks on the composed config that cross its groups (Hydra's schema cannot express them), and the job's identity.

Each job kind runs the checks it needs from here and its own (runner/job_kinds.py)."""

from __future__ import annotations

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from runner import (
    attacks,
    coreset,
    distributed,
    evaluate,
    inputs,
    lm_eval_utility,
    references,
    robustness,
    saved_model,
    threads,
)
from runner.cache import content_key
from runner.errors import ConfigError
from runner.options import SEED, Range, check_components, check_number
from runner.precision import CHOICES as PRECISIONS
from runner.training import TRAIN_RANGES

# keys that change where and how a job reports, not what it computes
NOT_IN_JOB_KEY = (
    "paths",
    "logger",
    "threads",
    "overwrite",
)  # where and how it runs and reports (overwrite: runner/rundir.py)
# the job's own numbers; the trainer blocks' are the shared trainer's (runner/training.py)
JOB_RANGES = {
    "seed": SEED,
    "eval.batch_size": Range(low=1, whole=True, example="16"),
    # a collapse check that NaN would silently turn off
    "unlearn.max_weight_norm_ratio": Range(low=0, low_open=True, optional=True, example="10 (or null: no check)"),
}
TRAIN_BLOCKS = ("unlearn", "benchmark.finetune", "distill.train")


def _check_numbers(cfg: DictConfig) -> None:
    """The job's own numeric settings and each trainer block's, through the one numeric check."""
    for key, allowed in JOB_RANGES.items():
        check_number(key, OmegaConf.select(cfg, key), allowed)
    for block in TRAIN_BLOCKS:
        node = OmegaConf.select(cfg, block)
        if node is not None:
            for name, allowed in TRAIN_RANGES.items():
                check_number(f"{block}.{name}", node.get(name), allowed)


def check_every_job(cfg: DictConfig) -> None:
    """The checks every job kind shares (the kind's own follow: runner/job_kinds.py ``validate``)."""
    check_number("seed", cfg.get("seed"), JOB_RANGES["seed"])
    threads.check_config(cfg.get("threads", "auto"))


def check_language_model_job(cfg: DictConfig) -> None:
    """The checks of a language-model job (unlearning, evaluation only, distillation, analysis): the groups
    it composes (model, benchmark, method, trainer blocks, coreset, attacks, references, utility) together."""
    _check_numbers(cfg)
    check_components(cfg)  # every component's declared option ranges (runner/options.py)
    check_precision(cfg)
    _check_generation(cfg)
    saved_model.check(OmegaConf.select(cfg, "save_model", default="none"))
    check_strategy(cfg)
    # the coreset selector and the fine-tuning attack check their own keys (and the attack its data) now,
    # not after hours of fine-tuning and unlearning
    coreset.check_config(cfg.get("coreset"), cfg.seed)
    attacks.check_config(cfg.get("finetune_attack"))
    robustness.check_config(cfg.get("robustness_attack"))
    evaluate.check_config(cfg)  # evaluation-only jobs (method=none) and where decoding= applies
    references.check_config(cfg)  # benchmark.target / retain / retain_logs (runner/references.py)
    lm_eval_utility.check_config(cfg)  # every utility.lm_eval task is known and its data loads


def _check_generation(cfg: DictConfig) -> None:
    """``generation.compile`` / ``generation.backend`` (vllm refused here where it cannot run)."""
    from runner.decoding import engine

    engine.check_config(cfg.get("generation"))


def check_precision(cfg: DictConfig) -> None:
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


def job_key(cfg: DictConfig, read: list[inputs.Input]) -> str:
    """The config (less where it reports) and the content identity of every input it reads (``read``, as the job's
    kind declares them: runner/job_kinds.py; digests: runner/inputs.py)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    plain = {k: v for k, v in resolved.items() if k not in NOT_IN_JOB_KEY}
    return content_key({**plain, "_inputs": inputs.identity(read)})


def config_key(cfg: DictConfig) -> str:
    """The key of the config alone: a record for a job that stopped before its inputs could be read."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return content_key({k: v for k, v in resolved.items() if k not in NOT_IN_JOB_KEY})
