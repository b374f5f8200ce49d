"""The job kinds behind one contract, and the one table that picks a job's kind.

``task`` picks the kind (``conf/task``: unlearn, distill, analyse, diffusion_attack); an unlearning job
with ``method=none`` is the evaluation-only kind. Every kind provides the same four things:

- ``check_config(cfg)``: every check that needs no data and no model, run before any stage (and by
  the launcher before any rank starts), after the checks every job shares (``runner/config.py``);
- ``settle(cfg)``: settings fixed before the job key (a value that cannot matter, recorded as the one
  that is used), so that equivalent jobs share one key;
- ``inputs(cfg)``: what the job reads, asked of its components (each declares its own through its
  contract: ``inputs(node)`` on a benchmark, method, analysis class; ``inputs()`` on a built attack),
  so that their content enters the job key (``runner/inputs.py``);
- ``run(cfg, run_dir, cache_dir, record, strategy, callbacks)``: the kind's pipeline, filling ``record``.

``language_model`` says whether the kind drives the text-generation engine (``generation``); the
diffusion attack's ``generation`` node is its image sampler's instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from omegaconf import DictConfig

from runner import attacks, evaluate, models
from runner import config as checks
from runner.analysis.job import run_analysis
from runner.diffusion import job as diffusion_job
from runner.distill import traces
from runner.distill.job import run_distillation, settle_full_trace_ratio
from runner.inputs import Input, declared_by
from runner.unlearning_job import run_unlearning


class JobKind(Protocol):
    language_model: bool

    def check_config(self, cfg: DictConfig) -> None: ...

    def settle(self, cfg: DictConfig) -> None: ...

    def inputs(self, cfg: DictConfig) -> list[Input]: ...

    def run(self, cfg: DictConfig, run_dir: Path, cache_dir: Path, record, strategy, callbacks) -> None: ...


def _model_job_inputs(cfg: DictConfig) -> list[Input]:
    """What every language-model job reads: its benchmark, method, fine-tuning attack and model."""
    found = declared_by(cfg.get("benchmark"), "benchmark")
    found += declared_by(cfg.get("method"), "method", scan_fallback=False)
    found += attacks.attack_inputs(cfg.get("finetune_attack"))
    return found + (models.inputs(cfg.model) if cfg.get("model") is not None else [])


class Unlearning:
    """model -> benchmark -> [coreset] -> unlearn -> evaluate -> [attacks] -> record (runner/unlearning_job.py)."""

    language_model = True

    def check_config(self, cfg: DictConfig) -> None:
        checks.check_language_model_job(cfg)

    def settle(self, cfg: DictConfig) -> None:
        pass

    def inputs(self, cfg: DictConfig) -> list[Input]:
        return _model_job_inputs(cfg)

    def run(self, cfg, run_dir, cache_dir, record, strategy, callbacks) -> None:
        run_unlearning(cfg, run_dir, cache_dir, record, strategy, callbacks)


class EvaluationOnly(Unlearning):
    """method=none: model -> benchmark -> evaluate -> record (runner/evaluate.py)."""

    def settle(self, cfg: DictConfig) -> None:
        evaluate.settle_training_data(cfg)

    def run(self, cfg, run_dir, cache_dir, record, strategy, callbacks) -> None:
        evaluate.evaluate_only(cfg, cache_dir, record)


class Distillation(Unlearning):
    """model -> traces -> condense -> fine-tune -> evaluate (runner/distill/job.py)."""

    def settle(self, cfg: DictConfig) -> None:
        settle_full_trace_ratio(cfg)

    def inputs(self, cfg: DictConfig) -> list[Input]:
        # the chains of thought it trains on
        return _model_job_inputs(cfg) + (traces.inputs(cfg.traces) if cfg.get("traces") is not None else [])

    def run(self, cfg, run_dir, cache_dir, record, strategy, callbacks) -> None:
        run_distillation(cfg, run_dir, cache_dir, record, strategy, callbacks)


class Analysis(Unlearning):
    """finished runs -> their models -> analysis -> record (runner/analysis/)."""

    def inputs(self, cfg: DictConfig) -> list[Input]:
        # the analysed runs' directories (files, sizes, times) are part of its job key, so an analysis of a run
        # that was since redone is not answered by the stale result
        return _model_job_inputs(cfg) + declared_by(cfg.get("analysis"), "analysis")

    def run(self, cfg, run_dir, cache_dir, record, strategy, callbacks) -> None:
        run_analysis(cfg, run_dir, cache_dir, record)


class DiffusionAttack:
    """pipeline -> attack -> [defence] -> generate -> detect (runner/diffusion/)."""

    language_model = False

    def check_config(self, cfg: DictConfig) -> None:
        checks.check_precision(cfg)
        diffusion_job.check_config(cfg)

    def settle(self, cfg: DictConfig) -> None:
        pass

    def inputs(self, cfg: DictConfig) -> list[Input]:
        return diffusion_job.inputs(cfg)

    def run(self, cfg, run_dir, cache_dir, record, strategy, callbacks) -> None:
        diffusion_job.run_diffusion_attack(cfg, run_dir, cache_dir, record)


# `task` -> kind; an unlearning task without a method is the evaluation-only kind
KINDS: dict[str, JobKind] = {
    "unlearn": Unlearning(),
    "evaluate": EvaluationOnly(),
    "distill": Distillation(),
    "analyse": Analysis(),
    "diffusion_attack": DiffusionAttack(),
}


def kind_name(cfg: DictConfig) -> str:
    task = cfg.get("task")
    if task in ("distill", "analyse", "diffusion_attack"):
        return task
    return "evaluate" if evaluate.is_evaluation_only(cfg) else "unlearn"


def kind_of(cfg: DictConfig) -> JobKind:
    return KINDS[kind_name(cfg)]


def validate(cfg: DictConfig) -> None:
    """Every check that needs no data and no model: runs before any stage, in the launcher too."""
    checks.check_every_job(cfg)
    kind_of(cfg).check_config(cfg)


def job_key(cfg: DictConfig) -> str:
    """The job's key: its config and the content of every input its kind reads (checked on the way)."""
    return checks.job_key(cfg, kind_of(cfg).inputs(cfg))
