"""The contract of a benchmark: what to unlearn, what to compare against, and how to score a model.

A benchmark is built once per job from its config node (``conf/benchmark/*.yaml``: ``_target_``
plus options) with the tokenizer and the model's prompt format, through the one builder
(``build_benchmark``). Building it loads and checks its data, so bad data stops the job before
any training. Then the job reads:

- ``forget_rows`` / ``retain_rows``: the rows to unlearn and to keep (``{"question", "answer"}``
  or ``{"text"}``); both empty for an evaluation-only benchmark (reasoning suites);
- ``cache_dir``: the job's cache directory where the pipeline passes one (None in scripts);
- ``finetuned_models``: the models the job fine-tunes from the loaded one before unlearning and
  evaluates for comparison, by kind (TOFU: ``target`` on forget + retain, ``retain`` on the retain
  rows); empty where the loaded model is itself the one to unlearn (WMDP);
- ``ready_models``: the reference models given as a hub id or directory instead of built
  (``benchmark.target`` / ``retain``, runner/references.py), by kind; ``retain_log``: the retain
  model's evaluation read from ``benchmark.retain_logs`` (runner/retain_logs.py) or None;
- ``encode(rows)``: rows as training examples (token ids, labels on the answer), each with its
  position as ``index``;
- ``encoding()``: what turns rows into tokens (prompt format, max length): part of the cache key
  of the fine-tuned models;
- ``identity()``: everything an evaluation depends on (data, suites, caps): part of the key under
  which evaluations of a model are cached;
- ``evaluate(model, eval_cfg, precision) -> {"suites": ..., "per_example": ...}``: aggregates per
  suite and per-example values, for one model;
- ``summarize(evaluation, baselines) -> {metric: value}``: the headline numbers of one evaluation,
  given the evaluations of the fine-tuned models (TOFU's Forget Quality needs the retain model's);
  the metric names are declared with their direction and label in the output side's metric specs.

Class-level: ``inputs(cfg)`` lists the files and data sets the benchmark reads, so their content
enters the job key (``runner.inputs``); the default finds them by scanning the config for paths.
``finetunes(cfg)`` names the fine-tuned models a config builds, and ``option_ranges`` the allowed
values of the options (``runner.options``): both are read at config validation, before any stage.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from omegaconf import DictConfig, OmegaConf

from runner.components import build
from runner.data.qa import PromptFormat
from runner.training import TRAIN_RANGES


class Benchmark(ABC):
    name: str = ""
    # option -> allowed values, checked before any stage (runner/options.py); `finetune` is the shared trainer's
    option_ranges: dict = {f"finetune.{name}": allowed for name, allowed in TRAIN_RANGES.items()}

    def __init__(self, tokenizer, fmt: PromptFormat, cache_dir=None, **options):
        # the benchmark's own config subtree, as a node so that options read as cfg.key
        self.cfg: DictConfig = OmegaConf.create(options)
        self.tokenizer, self.fmt = tokenizer, fmt
        self.cache_dir = cache_dir  # the job's cache, for models an evaluation loads (WMDP's judge); may be None
        self.forget_rows: list[dict] = []
        self.retain_rows: list[dict] = []
        self.finetuned_models: dict[str, list[dict]] = {}
        # rows one evaluation scores, and the default job's: a job far above it says so before its first model
        self.evaluated_rows: int | None = None
        self.default_evaluated_rows: int | None = None
        self.ready_models: dict[str, str] = {}  # kind -> hub id or directory (runner/references.py)
        self.retain_log = None  # a retain model's evaluation read from a file (runner/retain_logs.py)

    @classmethod
    def inputs(cls, cfg) -> list:
        from runner.inputs import scan

        return scan(cfg, "benchmark")

    @classmethod
    def finetunes(cls, cfg) -> list[str]:
        """The fine-tuned models (``finetuned_models``' kinds) a benchmark of this config builds, told from the
        config alone, so that a job that cannot build them (evaluation only) is refused before the model loads."""
        return []

    @abstractmethod
    def encode(self, rows: list[dict]) -> list[dict]: ...

    @abstractmethod
    def encoding(self) -> dict: ...

    @abstractmethod
    def identity(self) -> dict: ...

    @abstractmethod
    def evaluate(self, model, eval_cfg, precision: str) -> dict: ...

    @abstractmethod
    def summarize(self, evaluation: dict, baselines: dict[str, dict]) -> dict: ...


def build_benchmark(node, tokenizer, fmt: PromptFormat, cache_dir=None) -> Benchmark:
    """The benchmark ``node`` names, built with the tokenizer and prompt format it encodes with (and the
    job's cache directory, where an evaluation loads a model of its own)."""
    runtime = {"cache_dir": cache_dir} if cache_dir is not None else {}
    return build(node, Benchmark, "benchmark", tokenizer=tokenizer, fmt=fmt, **runtime)
