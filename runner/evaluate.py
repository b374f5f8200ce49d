"""Evaluation-only jobs (``method=none``): model -> benchmark -> evaluate (decoding strategy) -> record.

No unlearning, no reference models, no coreset or attack: the loaded model is evaluated
once and recorded as the ``evaluated`` row of results.json (metrics, per-example values,
suites), with the same status, skip-if-finished, sweeps, trackers and report tables as
any job (runner.job.run drives it). Only rank 0 evaluates when several ranks run.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from runner import distributed
from runner.benchmarks.base import build_benchmark
from runner.data.qa import PromptFormat
from runner.errors import ConfigError
from runner.models import load_model

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
        for group in ("coreset", "finetune_attack", "robustness_attack"):
            if cfg.get(group):
                raise ConfigError(
                    group,
                    f"method=none evaluates the loaded model, so {group}={cfg[group].get('name') or ','.join(cfg[group])} has nothing to act on",
                    f"set {group}=none, or choose an unlearning method",
                )
    elif uses_decoding:
        raise ConfigError(
            "method",
            f"benchmark={cfg.benchmark.name} only evaluates (it has no forget or retain set)",
            "run it as an evaluation-only job: method=none",
        )


def evaluate_only(cfg: DictConfig, cache_dir: Path, record) -> None:
    """The evaluation-only pipeline; fills ``record`` (saved by the caller)."""
    with record.stage("load_model"):
        model, tokenizer = load_model(cfg.model, cache_dir)
        model.to(distributed.device())

    with record.stage("build_benchmark"):
        bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt), cache_dir)
        if bench.finetuned_models:
            raise ConfigError(
                "method",
                f"benchmark={cfg.benchmark.name} scores against fine-tuned models "
                f"({', '.join(bench.finetuned_models)}) that an evaluation-only job does not build",
                "choose an unlearning method, or a benchmark without fine-tuned models (wmdp, math500, gsm8k, "
                "aime24, aime25, amc23; muse with benchmark.build_references=false)",
            )

    if not distributed.is_main_process():  # rank 0 evaluates and records
        return
    with record.stage("evaluate"):
        evaluation = bench.evaluate(model, cfg.eval, cfg.precision)
    record.data["metrics"] = {ROW: bench.summarize(evaluation, {})}
    record.data["evaluation"] = {ROW: evaluation["suites"]}
    record.data["per_example"] = {ROW: evaluation["per_example"]}
