"""The distillation job (``task=distill``): model -> traces -> condense -> fine-tune -> evaluate -> record.

A student model is fine-tuned with the shared trainer on chains of thought from a reasoning
model, condensed as ``condense=`` says. The loss falls on the response tokens only. The student
is then evaluated on a reasoning benchmark, with the same machinery as evaluation-only jobs.

A response is the kept thoughts, each followed by the separator, then the close marker and the
final answer:

    {open}{thought}{sep}{thought}{sep}...{close}{final}<eos>

Each part is tokenised on its own and the ids are concatenated. So an example's token count is
the exact sum of its parts, and EPiC's saving can be counted per thought. The examples are
those whose *full* trace fits ``distill.max_length``. Every condenser then trains on the same
problems, in the same seeded order, with the same number of steps per epoch, so that training
time compares with training tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from runner import distributed
from runner.benchmarks.base import build_benchmark
from runner.benchmarks.reasoning import reasoning_prompt
from runner.components import build
from runner.data.qa import IGNORE, PromptFormat
from runner.distill.base import Condenser
from runner.distill.condense import split_thoughts
from runner.distill.traces import Trace, load_traces
from runner.errors import ConfigError
from runner.models import load_model, set_trainable
from runner.scoring import mean_nll
from runner.training import ListDataset, collate_single, train

log = logging.getLogger(__name__)
ROW = "distilled"  # the metrics row of the fine-tuned student (``base``: before, where evaluated)


@dataclass
class Encoded:
    """One training example and what condensation did to it."""

    example: dict  # input_ids / labels / index, for the trainer
    thoughts: int
    kept: list[int]
    response_tokens_full: int
    response_tokens: int
    extra: dict = field(default_factory=dict)


class ResponseEncoder:
    """Prompt and condensed response as token ids, each part tokenised on its own (see the module docstring)."""

    def __init__(self, tokenizer, fmt: PromptFormat, instruction: str, distill_cfg, traces_cfg):
        self.tokenizer, self.fmt, self.instruction = tokenizer, fmt, instruction
        self.open, self.close = str(distill_cfg.open), str(distill_cfg.close)
        self.sep, self.splitter = str(traces_cfg.separator), str(traces_cfg.splitter)
        split_thoughts("", self.splitter)  # a bad regex stops the job here, before any training
        self.eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def prompt(self, question: str) -> list[int]:
        text = reasoning_prompt(self.fmt, self.instruction, question)
        return self.tokenizer(text, add_special_tokens=self.fmt.special_tokens)["input_ids"]

    def parts(self, thoughts: list[str], final: str) -> tuple[list[int], list[list[int]], list[int]]:
        """(opening ids, one id list per thought with its separator, closing ids: close + final + EOS)."""
        return self.ids(self.open), [self.ids(t + self.sep) for t in thoughts], self.ids(self.close + final) + self.eos

    def encode(self, index: int, trace: Trace, condenser: Condenser, seed: int) -> Encoded:
        thoughts = split_thoughts(trace.thinking, self.splitter)
        kept = condenser.keep(len(thoughts), seed)
        opening, per_thought, closing = self.parts(thoughts, trace.final)
        response = opening + [i for k in kept for i in per_thought[k]] + closing
        full = len(opening) + sum(map(len, per_thought)) + len(closing)
        prompt = self.prompt(trace.question)
        example = {"input_ids": prompt + response, "labels": [IGNORE] * len(prompt) + response, "index": index}
        return Encoded(example, len(thoughts), kept, full, len(response), {"prompt_tokens": len(prompt)})


def prepare_examples(traces: list[Trace], encoder: ResponseEncoder, condenser: Condenser, max_length: int):
    """Encoded examples of the traces whose full (uncondensed) form fits ``max_length``, and how many did not."""
    out, dropped = [], 0
    for i, trace in enumerate(traces):
        enc = encoder.encode(len(out), trace, condenser, seed=i)
        if enc.extra["prompt_tokens"] + enc.response_tokens_full > max_length:
            dropped += 1
            continue
        out.append(enc)
    return out, dropped


def settle_full_trace_ratio(cfg: DictConfig) -> None:
    """``condense=none`` keeps every thought whatever its ratio: the ratio is set to 1.0 before the job key, so
    the none points of a grid over ratios (``+sweep=epic``) are one job, trained once and reused by the rest."""
    if cfg.get("task") != "distill" or (cfg.get("condense") or {}).get("name") != "none":
        return
    if cfg.condense.get("ratio") != 1.0:
        log.info(
            "condense=none keeps every thought: condense.ratio=%s is ignored (recorded as 1.0)", cfg.condense.ratio
        )
        cfg.condense.ratio = 1.0


def run_distillation(cfg: DictConfig, run_dir: Path, cache_dir: Path, record, strategy=None, callbacks=()) -> None:
    """The distillation pipeline; fills ``record`` (saved by the caller). ``strategy``: the job's distributed one."""
    condenser = build(cfg.condense, Condenser, "condense")
    traces = load_traces(cfg.traces)  # before the model: bad trace data stops the job first
    with record.stage("load_model"):
        model, tokenizer = load_model(cfg.model, cache_dir)
        model.to(distributed.device())
        set_trainable(model, cfg.model.trainable_layers)
    fmt = PromptFormat.from_cfg(cfg.model.prompt)

    with record.stage("build_benchmark"):
        bench = build_benchmark(cfg.benchmark, tokenizer, fmt)

    with record.stage("condense"):
        encoder = ResponseEncoder(tokenizer, fmt, str(cfg.distill.instruction), cfg.distill, cfg.traces)
        encoded, dropped = prepare_examples(traces, encoder, condenser, int(cfg.distill.max_length))
        if not encoded:
            raise ConfigError(
                "distill.max_length",
                f"none of the {len(traces)} traces fits in {cfg.distill.max_length} tokens",
                "raise distill.max_length",
            )
        record.data["distill"] = condensation_record(encoded, dropped, condenser)

    evaluations = {}
    main = distributed.is_main_process()
    if cfg.distill.evaluate_base and main:
        with record.stage("evaluate_base"):
            evaluations["base"] = bench.evaluate(model, cfg.eval, cfg.precision)

    with record.stage("finetune"):
        examples = [e.example for e in encoded]
        stats = train(
            model,
            ListDataset(examples),
            collate_single(tokenizer.pad_token_id),
            lambda m, batch: (mean_nll(m, batch), {}),  # labels mark the response tokens only
            cfg.distill.train,
            seed=cfg.seed,
            precision=cfg.precision,
            output_dir=run_dir / "distill",
            stage="distill",
            callbacks=list(callbacks),
            strategy=strategy,
        )
        epochs = _epochs_run(stats, len(examples), cfg.distill.train)
        stats["trained_tokens"] = round(epochs * sum(len(e["input_ids"]) for e in examples))
        stats["trained_response_tokens"] = round(epochs * sum(e.response_tokens for e in encoded))
        record.data["training"]["distill"] = stats

    if not main:
        return
    with record.stage("evaluate"):
        evaluations[ROW] = bench.evaluate(model, cfg.eval, cfg.precision)
    record.data["metrics"] = {k: bench.summarize(v, {}) for k, v in evaluations.items()}
    record.data["metrics"][ROW] |= {
        "train_tokens": stats["trained_tokens"],
        "train_seconds": stats["seconds"],
        "kept_token_fraction": record.data["distill"]["kept_token_fraction"],
    }
    record.data["evaluation"] = {k: v["suites"] for k, v in evaluations.items()}
    record.data["per_example"] = {k: v["per_example"] for k, v in evaluations.items()}


def _epochs_run(stats: dict, n: int, train_cfg) -> float:
    """Passes over the data the trainer made (a max_steps run may stop inside an epoch)."""
    per_step = train_cfg.batch_size * train_cfg.grad_accum * distributed.world_size()
    return stats["steps"] * per_step / n if train_cfg.get("max_steps") else float(train_cfg.epochs)


def condensation_record(encoded: list[Encoded], dropped: int, condenser: Condenser) -> dict:
    """results.json's ``distill``: totals, and per example the thoughts kept and the token counts."""
    full = sum(e.response_tokens_full for e in encoded)
    kept = sum(e.response_tokens for e in encoded)
    return {
        "condenser": condenser.name,
        "ratio": condenser.ratio,
        "examples": len(encoded),
        "dropped_too_long": dropped,
        "response_tokens_full": full,
        "response_tokens_kept": kept,
        "kept_token_fraction": kept / full if full else 1.0,
        "per_example": [
            {
                "thoughts": e.thoughts,
                "kept": e.kept,
                "response_tokens_full": e.response_tokens_full,
                "response_tokens": e.response_tokens,
            }
            for e in encoded
        ],
    }
