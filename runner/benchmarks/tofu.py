"""TOFU (Maini et al., 2024): forget a split of fictitious authors, keep the rest.

Evaluation suites: forget, retain, real_authors, world_facts. Per suite:
Probability, ROUGE-L recall of the greedy answer, Truth Ratio; then Forget
Quality (KS test against the retain model) and Model Utility (harmonic mean
of nine values). Per-example values are returned alongside the aggregates.
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset

from runner import references
from runner.benchmarks.base import Benchmark
from runner.cache import content_key
from runner.data import tofu as tofu_data
from runner.data.qa import IGNORE, PromptFormat, encode_qa
from runner.decoding.generate import greedy_generate
from runner.errors import ConfigError
from runner.metrics import tofu as M
from runner.retain_logs import read_retain_logs
from runner.scoring import score_answer_sets

SUITES = ("forget", "retain", "real_authors", "world_facts")


class TofuBenchmark(Benchmark):
    name = "tofu"

    def __init__(self, tokenizer, fmt: PromptFormat, **options):
        super().__init__(tokenizer, fmt, **options)
        cfg = self.cfg
        if cfg.forget_split not in tofu_data.FORGET_SPLITS:
            raise ConfigError(
                "benchmark.forget_split",
                f"`{cfg.forget_split}` is not a TOFU forget split",
                "use forget01, forget05 or forget10",
            )
        src = str(cfg.source)
        retain_split = cfg.retain_split or tofu_data.RETAIN_FOR_FORGET[cfg.forget_split]
        forget = self._load(cfg.forget_split, src, ("question", "answer"))
        retain = self._load(retain_split, src, ("question", "answer"))
        perturbed_cols = ("question", "answer", "paraphrased_answer", "perturbed_answer")
        suites = {
            "forget": self._load(f"{cfg.forget_split}_perturbed", src, perturbed_cols),
            "retain": self._load("retain_perturbed", src, perturbed_cols),
            "real_authors": self._load("real_authors_perturbed", src, ("question", "answer", "perturbed_answer")),
            "world_facts": self._load("world_facts_perturbed", src, ("question", "answer", "perturbed_answer")),
        }
        sub = cfg.subset
        if sub is not None:
            forget = _head(forget, sub.forget)
            suites["forget"] = _head(suites["forget"], sub.forget)
            suites["retain"] = _head(suites["retain"], sub.retain)
            suites["real_authors"] = _head(suites["real_authors"], sub.eval_rows)
            suites["world_facts"] = _head(suites["world_facts"], sub.eval_rows)
            # train on the retain rows that are evaluated, so the retain suite measures kept knowledge
            keep = set(suites["retain"]["question"])
            retain = retain.select([i for i, q in enumerate(retain["question"]) if q in keep])
        self.suites = suites
        self.forget_rows = [
            {"question": q, "answer": a} for q, a in zip(forget["question"], forget["answer"], strict=True)
        ]
        self.retain_rows = [
            {"question": q, "answer": a} for q, a in zip(retain["question"], retain["answer"], strict=True)
        ]
        # TOFU's protocol: the target model learns forget + retain, the retain model (the gold
        # standard that never saw the forget set) learns the retain rows only; a model given ready
        # (benchmark.target / retain) or a retain log (benchmark.retain_logs) is not built
        self.ready_models = references.ready_models(cfg)
        self.retain_log = read_retain_logs(str(cfg.retain_logs), cfg) if cfg.get("retain_logs") else None
        built = {"target": self.forget_rows + self.retain_rows, "retain": self.retain_rows}
        not_built = set(self.ready_models) | ({"retain"} if self.retain_log else set())
        self.finetuned_models = {k: v for k, v in built.items() if k not in not_built}
        self.max_new_tokens = self._answer_caps()
        # every row tokenised once, here: a row whose answer does not fit stops the job before any training
        self._scored = {suite: self._scoring_inputs(suite) for suite in SUITES}
        for rows, name in ((self.forget_rows, "forget"), (self.retain_rows, "retain")):
            for i, r in enumerate(rows):
                self._split(f"{name} training", i, r["question"], r["answer"])

    @staticmethod
    def inputs(cfg) -> list:
        """The files (or hub configs) this benchmark reads: their content is part of the job key (runner/inputs.py)."""
        retain = cfg.retain_split or tofu_data.RETAIN_FOR_FORGET.get(cfg.forget_split)
        names = [cfg.forget_split, retain, f"{cfg.forget_split}_perturbed", "retain_perturbed"]
        names += ["real_authors_perturbed", "world_facts_perturbed"]
        return [tofu_data.input_of(str(n), str(cfg.source)) for n in names if n] + references.inputs(cfg)

    @staticmethod
    def _load(name: str, source: str, columns: tuple[str, ...]) -> Dataset:
        ds = tofu_data.load_config(name, source)
        tofu_data.check_columns(ds, name, columns)
        return ds

    # ---- training sets ---------------------------------------------------------------------

    def encode(self, rows: list[dict]) -> list[dict]:
        """Encoded QA examples, each tagged with its position as ``index``."""
        return [
            {**encode_qa(self.tokenizer, self.fmt, r["question"], r["answer"], self.cfg.max_length), "index": i}
            for i, r in enumerate(rows)
        ]

    # ---- evaluation -----------------------------------------------------------------------

    def evaluate(self, model, eval_cfg, precision: str) -> dict:
        """Aggregates and per-example values for every suite (no Forget Quality: that needs the retain model)."""
        result = {"suites": {}, "per_example": {}}
        for suite in SUITES:
            agg, per = self._evaluate_suite(model, suite, eval_cfg, precision)
            result["suites"][suite] = agg
            result["per_example"][suite] = per
        result["model_utility"] = M.model_utility(result["suites"])
        return result

    def _evaluate_suite(self, model, suite: str, eval_cfg, precision: str):
        ds = self.suites[suite]
        answers = ds["answer"]
        # the "true" answer of the truth ratio: the paraphrase where TOFU has one, else the answer itself
        has_paraphrase = "paraphrased_answer" in ds.column_names
        prompts, answer_sets = self._scored[suite]
        scores = score_answer_sets(
            model, prompts, answer_sets, self.tokenizer.pad_token_id, eval_cfg.batch_size, precision, f"score {suite}"
        )
        avg_nll = [s[:, 0] / s[:, 1] for s in scores]  # every answer has tokens: _split checks
        answer_nll = np.array([v[0] for v in avg_nll])
        true_nll = np.array([v[1] for v in avg_nll]) if has_paraphrase else answer_nll
        false_nll = [list(v[2:] if has_paraphrase else v[1:]) for v in avg_nll]

        prob = M.normalised_prob(answer_nll) if suite in ("forget", "retain") else M.option_prob(answer_nll, false_nll)
        ratios = M.truth_ratio(true_nll, false_nll)
        tr_stat = M.truth_ratio_forget_stat(ratios) if suite == "forget" else M.truth_ratio_utility_stat(ratios)

        generations = greedy_generate(
            model,
            self.tokenizer,
            prompts,
            self.max_new_tokens[suite],
            eval_cfg.batch_size,
            precision,
            f"generate {suite}",
        )
        rouge = M.rouge_l_recall(generations, answers)

        agg = {"prob": float(np.mean(prob)), "rouge": float(np.mean(rouge)), "truth_ratio": tr_stat}
        per = {
            "prob": prob.tolist(),
            "rouge": rouge,
            "truth_ratio": ratios.tolist(),
            "generation": generations,
        }
        return agg, per

    def _scoring_inputs(self, suite: str) -> tuple[list[list[int]], list[list[list[int]]]]:
        """One prompt per question and its answers to score: gold, the paraphrase (if any), the perturbed ones."""
        ds = self.suites[suite]
        has_paraphrase = "paraphrased_answer" in ds.column_names
        prompts, answer_sets = [], []
        for qi, q in enumerate(ds["question"]):
            variants = [ds["answer"][qi]]
            variants += [ds["paraphrased_answer"][qi]] if has_paraphrase else []
            variants += list(ds["perturbed_answer"][qi])
            split = [self._split(suite, qi, q, a) for a in variants]
            prompts.append(split[0][0])
            answer_sets.append([answer for _, answer in split])
        return prompts, answer_sets

    def _split(self, suite: str, qi: int, question: str, answer: str) -> tuple[list[int], list[int]]:
        """(prompt ids, answer ids + EOS) of one row, as trained; an answer cut away entirely is an error."""
        encoded = encode_qa(self.tokenizer, self.fmt, question, answer, self.cfg.max_length)
        n_prompt = encoded["labels"].count(IGNORE)
        if n_prompt == len(encoded["input_ids"]):
            raise ConfigError(
                "benchmark.max_length",
                f"{suite} row {qi} ({question[:60]!r}) has no answer token left: its prompt fills "
                f"max_length={self.cfg.max_length} tokens, so its probability would be meaningless",
                "raise benchmark.max_length (TOFU uses 500 for long prompts)",
            )
        return encoded["input_ids"][:n_prompt], encoded["input_ids"][n_prompt:]

    def _answer_caps(self) -> dict[str, int]:
        """Greedy answer length per suite: the configured cap, or (auto) enough for every gold answer.

        ROUGE-L recall of a cut-off answer is capped below 1 even for a model that knows it, so
        ``auto`` takes the longest gold answer of the evaluated rows in this tokenizer, plus EOS
        and a margin for rephrasing. Generation stops at each row's EOS, so the cost follows the
        answers actually produced.
        """
        caps = {}
        for suite in SUITES:
            asked = self.cfg.max_new_tokens
            asked = asked if isinstance(asked, (int, str)) else asked[suite]
            if asked == "auto":
                longest = max(
                    len(self.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in self.suites[suite]["answer"]
                )
                asked = longest + 1 + max(4, longest // 10)
            if not isinstance(asked, int) or isinstance(asked, bool) or asked <= 0:
                raise ConfigError(
                    f"benchmark.max_new_tokens.{suite}", f"must be a positive count or auto, got {asked!r}", "use auto"
                )
            caps[suite] = asked
        return caps

    def summarize(self, evaluation: dict, baselines: dict[str, dict]) -> dict:
        """Headline numbers: Forget Quality against the retain model (or its log), Model Utility, forget Probability / ROUGE."""
        if self.retain_log is not None:  # given explicitly: the reference, even beside a ready retain model
            baselines = {**baselines, "retain": self.retain_log.baseline()}
        fq = (
            M.forget_quality(
                evaluation["per_example"]["forget"]["truth_ratio"],
                baselines["retain"]["per_example"]["forget"]["truth_ratio"],
            )
            if "retain" in baselines
            else float("nan")  # an evaluation-only job of a model without a retain reference
        )
        return {
            "forget_quality": fq,
            "model_utility": evaluation["model_utility"],
            "forget_prob": evaluation["suites"]["forget"]["prob"],
            "forget_rouge": evaluation["suites"]["forget"]["rouge"],
            "forget_truth_ratio": evaluation["suites"]["forget"]["truth_ratio"],
            "retain_prob": evaluation["suites"]["retain"]["prob"],
            "retain_rouge": evaluation["suites"]["retain"]["rouge"],
        }

    def encoding(self) -> dict:
        """How rows become tokens: part of every cache key of a model trained on them."""
        fmt = [self.fmt.question, self.fmt.answer] + ([] if self.fmt.special_tokens else ["no special tokens"])
        return {"format": fmt, "max_length": self.cfg.max_length}

    def identity(self) -> dict:
        """What the fine-tuning and evaluation caches depend on from this benchmark."""
        return {
            "forget": content_key(self.forget_rows),
            "retain": content_key(self.retain_rows),
            "suites": {k: content_key(v.to_list()) for k, v in self.suites.items()},
            **self.encoding(),
        }


def _head(ds: Dataset, n: int | None) -> Dataset:
    return ds if n is None else ds.select(range(min(n, len(ds))))
