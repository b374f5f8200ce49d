"""Reasoning benchmarks (MATH-500, GSM8K, AIME 2024 / 2025, AMC 2023): generate, check the answer, count.

One class for every data set; ``conf/benchmark/<name>.yaml`` says where the problems
are (``data``), how they are shown (``instruction`` inside the model's prompt) and how
long the model may answer. The model generates under the job's ``decoding`` strategy
(``benchmark.decoding`` is the job's ``decoding``), batched and KV-cached
(runner.decoding.generate); math-verify checks each answer (runner.metrics.reasoning).

Recorded per generated answer (``per_example``): the problem and sample index, the
generation, the extracted answer, the gold answer, whether it is correct, its length in
tokens, the length of its thinking (tokens before the end-of-thinking tag; all of it when
the tag never comes or the model has none), whether it closed its thinking, each
reflection word's count and the positions of the reflection tokens.

Metrics: ``accuracy`` (mean over all answers: pass@1, and with n samples per problem the
mean accuracy), ``pass@k`` for each k of ``pass_k`` with 1 < k <= n, ``mean_length``,
``mean_thinking_length``, ``reflections_per_response``, ``reflection_rate`` (reflection
tokens per generated token) and, where ``analysis`` gives a wave period or a window, the
reflection rate in the wave's +A quarter and -A half and inside the window. With
``analysis.probability``, the same as expected rates (``reflection_prob*``): the probability
the sampler gave the reflection tokens at each position, averaged over the answers still
generating there; smooth where reflection tokens are too rare to count.

As a benchmark it only evaluates: no forget or retain set, no reference models, so it
runs in evaluation-only jobs (``method=none``).
"""

from __future__ import annotations

import copy
import statistics

from omegaconf import OmegaConf

from runner.benchmarks.base import Benchmark
from runner.cache import content_key
from runner.data.qa import PromptFormat, encode_qa
from runner.data.reasoning import load_problems
from runner.decoding.base import DecodingContext
from runner.decoding.generate import eos_token_ids, generate
from runner.decoding.processors import ProbabilityByPosition, TokenProbability, sampling_warpers
from runner.decoding.strategies import build_decoding
from runner.decoding.tokens import tag_token_ids, word_token_ids
from runner.metrics import reasoning as R
from runner.options import Range, check_number


def reasoning_prompt(fmt: PromptFormat, instruction: str, problem: str) -> str:
    """The benchmark's instruction around the problem, inside the model's reasoning prompt (else its question turn)."""
    return (fmt.reasoning or fmt.question).format(question=instruction.format(question=problem))


# a suite's own numbers, as the benchmark and a suite inside another benchmark (WMDP's utility suites) hold them
SUITE_RANGES = {
    "subset": Range(low=1, whole=True, optional=True, example="16 (null: all)"),
    "max_new_tokens": Range(low=1, whole=True, example="8192 on a GPU"),
}


class ReasoningSuite:
    """Problems, prompts, generation and answer checking: the part another benchmark can reuse as a utility suite."""

    def __init__(self, cfg, tokenizer, fmt: PromptFormat, key: str = "benchmark"):
        self.cfg, self.tokenizer, self.fmt, self.key = cfg, tokenizer, fmt, key
        self.name = str(cfg.name)
        rows = load_problems(cfg.data, str(cfg.source), f"{key}.source")
        for name, allowed in SUITE_RANGES.items():
            check_number(f"{key}.{name}", cfg.get(name), allowed)
        n = cfg.get("subset")
        self.rows = rows if n is None else rows[:n]
        self.decoding = build_decoding(cfg.decoding)
        self.ctx = DecodingContext(tokenizer, fmt.think_end)
        self.resolved = self.decoding.check(self.ctx)  # words / tags that do not fit stop the job here
        self.words = word_token_ids(tokenizer, list(cfg.reflection_words), f"{key}.reflection_words")
        self.reflection_ids = {i for ids in self.words.values() for i in ids}
        self.think_end = tag_token_ids(tokenizer, fmt.think_end, "model.prompt.think_end") if fmt.think_end else None
        self.answer_after = cfg.data.get("answer_after")
        self.golds = [R.gold_answer(r["answer"], self.answer_after) for r in self.rows]
        self.prompt_texts = [reasoning_prompt(fmt, str(cfg.instruction), r["question"]) for r in self.rows]
        self.prompts = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in self.prompt_texts]

    def select(self, indices: list[int]) -> ReasoningSuite:
        """The same suite on the problems at ``indices`` only (e.g. chunks of a time-boxed run)."""
        part = copy.copy(self)
        for name in ("rows", "golds", "prompt_texts", "prompts"):
            setattr(part, name, [getattr(self, name)[i] for i in indices])
        return part

    def evaluate(self, model, batch_size: int, precision: str) -> tuple[dict, dict]:
        analysis = self.cfg.get("analysis") or {}
        probability = ProbabilityByPosition(int(self.cfg.max_new_tokens))
        observers = None
        if analysis.get("probability", False):
            d = self.decoding
            warpers = sampling_warpers(d.do_sample, d.temperature, d.top_p)
            eos = eos_token_ids(model, self.tokenizer)
            observers = lambda: [TokenProbability(self.reflection_ids, probability, eos, warpers)]  # noqa: E731
        run = generate(
            model,
            self.tokenizer,
            self.prompts,
            self.decoding,
            self.ctx,
            int(self.cfg.max_new_tokens),
            batch_size,
            precision,
            desc=f"{self.name} ({self.decoding.name})",
            observers=observers,
            vllm_ok=True,  # generation.backend=vllm: the problems go through vLLM with the same strategy
        )
        per: dict[str, list] = {
            k: []
            for k in (
                "problem",
                "sample",
                "generation",
                "answer",
                "gold",
                "correct",
                "length",
                "thinking_length",
                "closed_thinking",
                "reflections",
                "reflection_positions",
            )
        }
        for i, samples in enumerate(run.outputs):
            for s, g in enumerate(samples):
                think = R.thinking_length(g.ids, self.think_end)
                closed = self.think_end is not None and think < len(g.ids)
                answer_ids = g.ids[think + len(self.think_end) :] if closed else g.ids
                response = self.tokenizer.decode(answer_ids, skip_special_tokens=True) if closed else g.text
                extracted, correct = R.check_answer(response, self.golds[i], self.answer_after)
                row = {
                    "problem": i,
                    "sample": s,
                    "generation": g.text,
                    "answer": extracted,
                    "gold": self.golds[i],
                    "correct": correct,
                    "length": len(g.ids),
                    "thinking_length": think,
                    "closed_thinking": closed,
                    "reflections": R.reflection_counts(g.ids, self.words),
                    "reflection_positions": R.reflection_positions(g.ids, self.reflection_ids),
                }
                for k, v in row.items():
                    per[k].append(v)
        agg = self.aggregate(per, len(self.rows), self.decoding.n, probability.to_dict() if observers else None)
        agg["generation"] = run.stats
        agg["reflection_token_ids"] = self.words  # what was counted: each word's token ids
        agg["decoding_tokens"] = self.resolved  # what the decoding resolved (its words, s1's tag and insert)
        return agg, per

    def aggregate(self, per: dict, problems: int, n: int, probability: dict | None = None) -> dict:
        correct = per["correct"]
        agg = {
            "accuracy": sum(correct) / len(correct),
            "n_problems": problems,
            "samples_per_problem": n,
            "mean_length": statistics.fmean(per["length"]),
            "mean_thinking_length": statistics.fmean(per["thinking_length"]),
            "closed_thinking": sum(per["closed_thinking"]) / len(correct) if self.think_end else None,
            "reflections_per_response": statistics.fmean(sum(c.values()) for c in per["reflections"]),
            "reflections_per_word": {w: statistics.fmean(c[w] for c in per["reflections"]) for w in self.words},
            "reflection_rate": R.reflection_rate(per["reflection_positions"], per["length"]),
        }
        if n > 1:
            by_problem = [sum(correct[i * n : (i + 1) * n]) for i in range(problems)]
            for k in sorted({int(k) for k in self.cfg.pass_k if 1 < int(k) <= n}):
                agg[f"pass@{k}"] = statistics.fmean(R.pass_at_k(n, c, k) for c in by_problem)
        analysis = self.cfg.get("analysis") or {}
        positions, lengths = per["reflection_positions"], per["length"]
        subsets = {"": None}
        if analysis.get("period"):
            period, shift, window = float(analysis.period), float(analysis.get("shift") or 0.0), analysis.get("window")
            subsets["_peak_quarter"] = R.in_phase(period, shift, R.PEAK_QUARTER, window)
            subsets["_negative_half"] = R.in_phase(period, shift, R.NEGATIVE_HALF, window)
        if analysis.get("window"):
            subsets["_in_window"] = R.in_window(analysis.window)
        for suffix, keep in subsets.items():
            if suffix:
                agg[f"reflection_rate{suffix}"] = R.reflection_rate(positions, lengths, keep)
            if probability is not None:
                agg[f"reflection_prob{suffix}"] = R.probability_rate(probability["mass"], probability["count"], keep)
        if probability is not None:
            agg["reflection_probability"] = probability  # per position: summed probability, rows generating
        return agg

    @staticmethod
    def summary(agg: dict, prefix: str = "") -> dict:
        """The scalar metrics of a suite's aggregate (``prefix`` them when several suites share a table)."""
        keys = [
            "accuracy",
            *sorted((k for k in agg if k.startswith("pass@")), key=lambda k: int(k[5:])),
            "mean_length",
            "mean_thinking_length",
            "reflections_per_response",
            "reflection_rate",
            "reflection_rate_peak_quarter",
            "reflection_rate_negative_half",
            "reflection_rate_in_window",
            "reflection_prob",
            "reflection_prob_peak_quarter",
            "reflection_prob_negative_half",
            "reflection_prob_in_window",
        ]
        return {f"{prefix}{k}": agg[k] for k in keys if k in agg}

    def identity(self) -> dict:
        """What an evaluation depends on: problems, prompts, the decoding, the budget and what is counted."""
        return {
            "problems": content_key(self.rows),
            "prompts": content_key(self.prompt_texts),
            "think_end": self.fmt.think_end,
            "decoding": OmegaConf.to_container(self.cfg.decoding, resolve=True),
            "max_new_tokens": int(self.cfg.max_new_tokens),
            "reflection_words": list(self.cfg.reflection_words),
            "answer_after": self.answer_after,
            "analysis": OmegaConf.to_container(self.cfg.get("analysis") or {}, resolve=True),
        }


class ReasoningBenchmark(Benchmark):
    """A reasoning suite as the job's benchmark: evaluation only (no forget / retain sets, no fine-tuned models)."""

    option_ranges = {**SUITE_RANGES, "cyclic_period": Range(low=0, low_open=True, example="900")}

    def __init__(self, tokenizer, fmt: PromptFormat, **options):
        super().__init__(tokenizer, fmt, **options)
        self.name = str(self.cfg.name)
        self.suite = ReasoningSuite(self.cfg, tokenizer, fmt)

    def encode(self, rows: list[dict]) -> list[dict]:
        """Problems as question / gold-answer sequences (for a method that would train on them)."""
        return [
            {
                **encode_qa(self.tokenizer, self.fmt, r["question"], r["answer"], int(self.cfg.max_new_tokens)),
                "index": i,
            }
            for i, r in enumerate(rows)
        ]

    def evaluate(self, model, eval_cfg, precision: str) -> dict:
        agg, per = self.suite.evaluate(model, int(eval_cfg.batch_size), precision)
        return {"suites": {self.name: agg}, "per_example": {self.name: per}}

    def summarize(self, evaluation: dict, baselines: dict[str, dict]) -> dict:
        return ReasoningSuite.summary(evaluation["suites"][self.name])

    def encoding(self) -> dict:
        return {"format": [self.fmt.question, self.fmt.answer], "max_length": int(self.cfg.max_new_tokens)}

    def identity(self) -> dict:
        return self.suite.identity()
