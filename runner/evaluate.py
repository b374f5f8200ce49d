"""Evaluation-only jobs (``method=none``): model -> benchmark -> evaluate (decoding strategy) -> record.

No unlearning, no fine-tuned reference models, no coreset or attack: the loaded model (or the
ready target, ``benchmark.target``) is evaluated once and recorded as the ``evaluated`` row of
results.json (metrics, per-example values, suites), with the same status, skip-if-finished,
sweeps, trackers and report tables as any job (runner.job.run drives it). A ready retain model
(``benchmark.retain``) is evaluated too, as the ``retain`` row, and with it or a retain log
(``benchmark.retain_logs``) TOFU's Forget Quality is computed. Only rank 0 evaluates when several
ranks run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig

from runner import distributed, references
from runner.benchmarks.base import build_benchmark
from runner.data.qa import PromptFormat
from runner.errors import ConfigError
from runner.job_evaluation import evaluation_key, summarize, with_utility

log = logging.getLogger(__name__)
ROW = "evaluated"  # the metrics row of an evaluation-only job


def is_evaluation_only(cfg: DictConfig) -> bool:
    return cfg.get("method") is None


def check_config(cfg: DictConfig) -> None:
    """At validation: what an evaluation-only job cannot do, and decoding only where a benchmark uses it."""
    decoding = cfg.get("decoding")
    uses_decoding = "decoding" in cfg.benchmark
    if decoding is not None and not uses_decoding and decoding.get("name", "greedy") != "greedy":
        raise ConfigError(
            "decoding",
            f"benchmark={cfg.benchmark.get('name')} always generates greedily, so decoding={decoding.name} "
            "would change nothing",
            "use decoding=greedy here, or a reasoning benchmark (benchmark=math500|gsm8k|aime24|aime25|amc23)",
        )
    if is_evaluation_only(cfg):
        if cfg.get("task", "unlearn") == "unlearn":  # analyse / distill jobs have no method either
            _check_no_finetuned_models(cfg)
        for group in ("coreset", "finetune_attack", "robustness_attack"):
            if cfg.get(group):
                raise ConfigError(
                    group,
                    f"method=none evaluates the loaded model, so {group}={cfg[group].get('name') or ','.join(cfg[group])} has nothing to act on",
                    f"set {group}=none, or choose an unlearning method",
                )
    elif uses_decoding or _evaluates_only(cfg.benchmark):
        raise ConfigError(
            "method",
            f"benchmark={cfg.benchmark.name} only evaluates (it has no forget or retain set)",
            "run it as an evaluation-only job: method=none",
        )


def _evaluates_only(node) -> bool:
    """The benchmark class declares that it has no forget or retain set (``evaluation_only``)."""
    try:
        return bool(getattr(get_class(str(node.get("_target_"))), "evaluation_only", False))
    except Exception:  # a bad target is reported where the benchmark is built, with the builder's message
        return False


def settle_training_data(cfg: DictConfig) -> None:
    """An evaluation-only job reads no forget or retain data: a benchmark with a ``training_data`` switch
    (WMDP, whose bio forget corpus is gated) is told so before the job key, so it neither needs nor keys on it."""
    bench = cfg.get("benchmark") if cfg.get("task", "unlearn") == "unlearn" else None  # other kinds: no such job
    if bench is not None and is_evaluation_only(cfg) and bench.get("training_data", False):
        log.info(
            "method=none: benchmark=%s reads its questions only (benchmark.training_data=false)", cfg.benchmark.name
        )
        cfg.benchmark.training_data = False


def _refuse_finetuned_models(cfg: DictConfig, kinds) -> None:
    raise ConfigError(
        "method",
        f"benchmark={cfg.benchmark.get('name')} scores against fine-tuned models ({', '.join(kinds)}) that an "
        "evaluation-only job does not build",
        "give them ready (benchmark.target, and benchmark.retain or benchmark.retain_logs: docs/references.md), "
        "choose an unlearning method, or a benchmark without fine-tuned models (wmdp, mmlu, math500, gsm8k, "
        "aime24, aime25, amc23; muse with benchmark.build_references=false)",
    )


def _check_no_finetuned_models(cfg: DictConfig) -> None:
    """The benchmark's fine-tuned models, as its class tells them from the config (before the model loads)."""
    try:
        cls = get_class(str(cfg.benchmark.get("_target_")))
    except Exception:  # a bad dotted path is reported where the benchmark is built
        return
    kinds = cls.finetunes(cfg.benchmark) if hasattr(cls, "finetunes") else []
    if kinds:
        _refuse_finetuned_models(cfg, kinds)


def evaluate_only(cfg: DictConfig, cache_dir: Path, record) -> None:
    """The evaluation-only pipeline; fills ``record`` (saved by the caller)."""
    with record.stage("load_model"):
        model, tokenizer = references.load_job_model(cfg, cache_dir)
        model.to(distributed.device())

    with record.stage("build_benchmark"):
        bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt), cache_dir)
        if bench.finetuned_models:  # a benchmark whose finetunes(cfg) did not tell them
            _refuse_finetuned_models(cfg, bench.finetuned_models)
        if references.record_entry(bench):
            record.data["references"] = references.record_entry(bench)

    if not distributed.is_main_process():  # rank 0 evaluates and records
        return
    with record.stage("evaluate"):
        evaluations = {ROW: with_utility(bench.evaluate(model, cfg.eval, cfg.precision), model, bench, cfg)}
        if "retain" in bench.ready_models:
            evaluations["retain"] = references.evaluate_ready(
                "retain",
                cfg,
                bench,
                evaluation_key(cfg, bench),
                cache_dir,
                lambda m: bench.evaluate(m, cfg.eval, cfg.precision),
            )
    baselines = {k: v for k, v in evaluations.items() if k != ROW}
    record.data["metrics"] = {k: summarize(bench, v, baselines) for k, v in evaluations.items()}
    record.data["evaluation"] = {k: v["suites"] for k, v in evaluations.items()}
    record.data["per_example"] = {k: v["per_example"] for k, v in evaluations.items()}
