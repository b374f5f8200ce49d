"""What the unlearning job and the evaluation-only job share around one evaluation of a model."""

from __future__ import annotations

from omegaconf import OmegaConf

from runner import lm_eval_utility
from runner.benchmarks.base import Benchmark
from runner.cache import content_key


def evaluation_key(cfg, bench: Benchmark) -> str:
    """What an evaluation of a model depends on besides the model: the key of its cached evaluations."""
    parts = {
        "bench": bench.identity(),
        "eval": OmegaConf.to_container(cfg.eval, resolve=True),
        "precision": cfg.precision,
    }
    if lm_eval_utility.tasks(cfg):  # only then: the keys of jobs without lm-eval tasks stay as they were
        parts["utility"] = OmegaConf.to_container(lm_eval_utility.settings(cfg), resolve=True)
    return content_key(parts)


def with_utility(evaluation: dict, model, bench: Benchmark, cfg) -> dict:
    """``evaluation`` with the lm-eval utility tasks' results (runner/lm_eval_utility.py) where any are set."""
    if lm_eval_utility.tasks(cfg):
        evaluation["suites"]["lm_eval"] = lm_eval_utility.evaluate(model, bench.tokenizer, cfg, cfg.precision)
    return evaluation


def summarize(bench: Benchmark, evaluation: dict, baselines: dict) -> dict:
    """The benchmark's headline numbers, then the lm-eval utility tasks' (``lm_eval_<task>``, with stderr)."""
    return {
        **bench.summarize(evaluation, baselines),
        **lm_eval_utility.summary(evaluation["suites"].get("lm_eval", {})),
    }
