"""TOFU (Maini et al., 2024): forget a split of fictitious authors, keep the rest.

Evaluation suites: forget, retain, real_authors, world_facts. Per suite:
Probability, ROUGE-L recall of the greedy answer, Truth Ratio; then Forget
Quality (KS test against the retain model) and Model Utility (harmonic mean
of nine values). Per-example values are returned alongside the aggregates.
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset

from runner.cache import content_key
from runner.data import tofu as tofu_data
from runner.data.qa import PromptFormat, encode_prompt, encode_qa
from runner.errors import ConfigError
from runner.metrics import tofu as M
from runner.scoring import greedy_generate, score_sequences

SUITES = ("forget", "retain", "real_authors", "world_facts")


class TofuBenchmark:
    name = "tofu"

    def __init__(self, cfg, tokenizer, fmt: PromptFormat):
        if cfg.forget_split not in tofu_data.FORGET_SPLITS:
            raise ConfigError(
                "benchmark.forget_split",
                f"`{cfg.forget_split}` is not a TOFU forget split",
                "use forget01, forget05 or forget10",
            )
        self.cfg, self.tokenizer, self.fmt = cfg, tokenizer, fmt
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
        # standard that never saw the forget set) learns the retain rows only
        self.references = {"target": self.forget_rows + self.retain_rows, "retain": self.retain_rows}

    @staticmethod
    def inputs(cfg) -> list:
        """The files (or hub configs) this benchmark reads: their content is part of the job key (runner/inputs.py)."""
        retain = cfg.retain_split or tofu_data.RETAIN_FOR_FORGET.get(cfg.forget_split)
        names = [cfg.forget_split, retain, f"{cfg.forget_split}_perturbed", "retain_perturbed"]
        names += ["real_authors_perturbed", "world_facts_perturbed"]
        return [tofu_data.input_of(str(n), str(cfg.source)) for n in names if n]

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
        questions, answers = ds["question"], ds["answer"]
        perturbed = ds["perturbed_answer"]
        # the "true" answer of the truth ratio: the paraphrase where TOFU has one, else the answer itself
        has_paraphrase = "paraphrased_answer" in ds.column_names
        true_answers = ds["paraphrased_answer"] if has_paraphrase else answers

        seqs, owners = [], []  # owners[i] = (question index, role, perturbed slot)
        for qi, q in enumerate(questions):
            seqs.append((q, answers[qi]))
            owners.append((qi, "answer", 0))
            if has_paraphrase:
                seqs.append((q, true_answers[qi]))
                owners.append((qi, "true", 0))
            for k, p in enumerate(perturbed[qi]):
                seqs.append((q, p))
                owners.append((qi, "false", k))
        encoded = [encode_qa(self.tokenizer, self.fmt, q, a, self.cfg.max_length) for q, a in seqs]
        scores = score_sequences(
            model, encoded, self.tokenizer.pad_token_id, eval_cfg.batch_size, precision, f"score {suite}"
        )
        avg_nll = scores[:, 0] / np.maximum(scores[:, 1], 1)

        answer_nll = np.zeros(len(questions))
        false_nll: list[list[float]] = [[] for _ in questions]
        true_nll = np.zeros(len(questions))
        for (qi, role, _), v in zip(owners, avg_nll, strict=True):
            if role == "answer":
                answer_nll[qi] = v
            elif role == "true":
                true_nll[qi] = v
            else:
                false_nll[qi].append(v)
        if not has_paraphrase:
            true_nll = answer_nll

        prob = M.normalised_prob(answer_nll) if suite in ("forget", "retain") else M.option_prob(answer_nll, false_nll)
        ratios = M.truth_ratio(true_nll, false_nll)
        tr_stat = M.truth_ratio_forget_stat(ratios) if suite == "forget" else M.truth_ratio_utility_stat(ratios)

        prompts = [encode_prompt(self.tokenizer, self.fmt, q) for q in questions]
        generations = greedy_generate(
            model,
            self.tokenizer,
            prompts,
            self.cfg.max_new_tokens[suite],
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

    @staticmethod
    def summarize(evaluation: dict, references: dict[str, dict]) -> dict:
        """Headline numbers: Forget Quality against the retain model, Model Utility, forget Probability / ROUGE."""
        fq = M.forget_quality(
            evaluation["per_example"]["forget"]["truth_ratio"],
            references["retain"]["per_example"]["forget"]["truth_ratio"],
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
        return {"format": [self.fmt.question, self.fmt.answer], "max_length": self.cfg.max_length}

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
