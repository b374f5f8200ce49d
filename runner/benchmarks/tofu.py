"""TOFU (Maini et al., 2024): forget a split of fictitious authors, keep the rest.

Evaluation suites: forget, retain, real_authors, world_facts. Per suite:
Probability, ROUGE-L recall of the greedy answer, Truth Ratio; then Forget
Quality (KS test against the retain model) and Model Utility (harmonic mean
of nine values). Per-example values are returned alongside the aggregates.

Privacy and memorisation (runner/benchmarks/privacy.py): the forget suite's scoring pass also
yields the gold answers' token statistics, and a holdout set of non-member rows (the hub's
``holdoutNN``, or offline authors the target never saw) is scored the same way: MIA AUCs,
PrivLeak, Exact Memorization and Extraction Strength; Gibberish on the generated forget answers.
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset

from runner import references
from runner.benchmarks import gibberish, privacy
from runner.benchmarks.base import Benchmark
from runner.cache import content_key
from runner.data import tofu as tofu_data
from runner.data.qa import IGNORE, PromptFormat, encode_qa
from runner.decoding.generate import greedy_generate
from runner.errors import ConfigError
from runner.metrics import tofu as M
from runner.options import Choice, NumberOrWord, Range, check_number
from runner.retain_logs import read_retain_logs
from runner.scoring import score_answer_sets

SUITES = ("forget", "retain", "real_authors", "world_facts")
DEFAULT_EVALUATED_ROWS = 160  # the default job's rows per evaluation: forget01's 40 and 40 of each other suite


class TofuBenchmark(Benchmark):
    name = "tofu"
    option_ranges = {
        "forget_split": Choice(tofu_data.FORGET_SPLITS),
        "max_length": Range(low=1, whole=True, example="256"),
        # a count for every suite, `auto` (gold-derived caps) or one per suite (checked in _answer_caps)
        "max_new_tokens": NumberOrWord(Range(low=1, whole=True, example="200"), ("auto",)),
        "holdout.seed": Range(low=0, whole=True, example="0"),
        "mia.k": Range(low=0, high=1, low_open=True, example="0.4"),
        "mia.gradnorm_batch": Range(low=1, whole=True, example="8"),
        "subset.forget": Range(low=1, whole=True, optional=True, example="null (all)"),
        "subset.retain": Range(low=1, whole=True, optional=True, example="40"),
        "subset.eval_rows": Range(low=1, whole=True, optional=True, example="40"),
    }

    @classmethod
    def finetunes(cls, cfg) -> list[str]:
        return [kind for kind in ("target", "retain") if kind not in references.given(cfg)]

    def __init__(self, tokenizer, fmt: PromptFormat, **options):
        super().__init__(tokenizer, fmt, **options)
        cfg = self.cfg
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
        # what each model's evaluation scores, against the default job's (forget01 and the 40-row subsets: 160)
        self.evaluated_rows = sum(len(rows) for rows in suites.values())
        self.default_evaluated_rows = DEFAULT_EVALUATED_ROWS
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
        not_built = references.given(cfg)
        self.finetuned_models = {k: v for k, v in built.items() if k not in not_built}
        self.holdout_rows, self.holdout_source = self._holdout(src)
        self.max_new_tokens = self._answer_caps()
        # every row tokenised once, here: a row whose answer does not fit stops the job before any training
        self._scored = {suite: self._scoring_inputs(suite) for suite in SUITES}
        self._holdout_scored = [
            self._split("holdout", i, r["question"], r["answer"]) for i, r in enumerate(self.holdout_rows)
        ]
        if not 0 < float(cfg.mia.k) <= 1:
            raise ConfigError("benchmark.mia.k", f"must be a fraction in (0, 1], got {cfg.mia.k}", "use 0.4")
        self.gradnorm = [str(p) for p in cfg.mia.gradnorm]
        unknown = [p for p in self.gradnorm if p not in privacy.GRADNORM_P]
        if unknown:
            raise ConfigError(
                "benchmark.mia.gradnorm", f"unknown p-norm(s) {unknown}", "use a list of 1, 2, inf (or [])"
            )
        for rows, name in ((self.forget_rows, "forget"), (self.retain_rows, "retain")):
            for i, r in enumerate(rows):
                self._split(f"{name} training", i, r["question"], r["answer"])

    @staticmethod
    def inputs(cfg) -> list:
        """The files (or hub configs) this benchmark reads: their content is part of the job key (runner/inputs.py)."""
        retain = cfg.retain_split or tofu_data.RETAIN_FOR_FORGET.get(cfg.forget_split)
        names = [cfg.forget_split, retain, f"{cfg.forget_split}_perturbed", "retain_perturbed"]
        names += ["real_authors_perturbed", "world_facts_perturbed"]
        holdout = str(cfg.holdout.split)
        if holdout == "auto":
            holdout = tofu_data.holdout_split(str(cfg.forget_split)) if str(cfg.source) == "hub" else "full"
        names.append(holdout)
        return [tofu_data.input_of(str(n), str(cfg.source)) for n in names if n] + references.inputs(cfg)

    @staticmethod
    def _load(name: str, source: str, columns: tuple[str, ...]) -> Dataset:
        ds = tofu_data.load_config(name, source)
        tofu_data.check_columns(ds, name, columns)
        return ds

    def _holdout(self, src: str) -> tuple[list[dict], dict]:
        """Non-member rows for the membership attacks, as many as the forget rows, and where they came from."""
        cfg, n = self.cfg, len(self.forget_rows)
        split = str(cfg.holdout.split)
        if split == "auto" and src != "hub":
            trained = {r["question"] for r in self.forget_rows + self.retain_rows}
            full = self._load("full", src, ("question", "answer"))
            rows, authors = tofu_data.unseen_author_rows(full, trained, n, int(cfg.holdout.seed))
            source = {"split": "full", "authors": authors, "seed": int(cfg.holdout.seed), "n": len(rows)}
            if len(rows) < n:
                source["note"] = f"only {len(rows)} rows of authors never trained on (forget has {n})"
            return rows, source
        split = tofu_data.holdout_split(str(cfg.forget_split)) if split == "auto" else split
        try:
            ds = _head(self._load(split, src, ("question", "answer")), n)
        except ConfigError as exc:
            raise ConfigError(
                "benchmark.holdout.split",
                f"holdout config `{split}` could not be read from benchmark.source={src}",
                "use holdout.split=auto (holdoutNN on the hub, unseen authors of `full` offline)",
            ) from exc
        return [{"question": q, "answer": a} for q, a in zip(ds["question"], ds["answer"], strict=True)], {
            "split": split,
            "n": len(ds),
        }

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
        self._privacy(model, eval_cfg, precision, result)
        return result

    def _privacy(self, model, eval_cfg, precision: str, result: dict) -> None:
        """Holdout rows scored like the forget suite's gold answers; MIA AUCs; GradNorm; Gibberish."""
        forget = result["per_example"]["forget"]
        clean, note = gibberish.score(forget["generation"], self.cfg.gibberish.classifier, eval_cfg.batch_size)
        result["suites"]["gibberish"] = {"note": note} | ({"clean": float(np.mean(clean))} if clean else {})
        if clean is not None:
            forget["gibberish"] = clean
        result["suites"]["holdout"] = dict(self.holdout_source)
        if not self.holdout_rows:
            result["suites"]["holdout"]["note"] = "no holdout rows: membership attacks skipped"
            return
        prompts = [p for p, _ in self._holdout_scored]
        _, stats = score_answer_sets(
            model,
            prompts,
            [[a] for _, a in self._holdout_scored],
            self.tokenizer.pad_token_id,
            eval_cfg.batch_size,
            precision,
            "score holdout",
            gold_stats=True,
        )
        k, strict = float(self.cfg.mia.k), bool(self.cfg.extraction_strength.strict)
        holdout = privacy.row_scores(stats, [r["answer"] for r in self.holdout_rows], k, strict)
        if self.gradnorm:
            for part, pairs in (("forget", self._gold_pairs()), ("holdout", self._holdout_scored)):
                encoded = [{"input_ids": p + a, "labels": [IGNORE] * len(p) + a} for p, a in pairs]
                grads = privacy.gradnorm_scores(
                    model, encoded, self.gradnorm, precision, int(self.cfg.mia.gradnorm_batch)
                )
                (forget if part == "forget" else holdout).update(grads)
        result["per_example"]["holdout"] = holdout
        result["suites"]["mia"] = privacy.aucs(forget, holdout)

    def _gold_pairs(self) -> list[tuple[list[int], list[int]]]:
        prompts, answer_sets = self._scored["forget"]
        return [(p, answers[0]) for p, answers in zip(prompts, answer_sets, strict=True)]

    def _evaluate_suite(self, model, suite: str, eval_cfg, precision: str):
        ds = self.suites[suite]
        answers = ds["answer"]
        # the "true" answer of the truth ratio: the paraphrase where TOFU has one, else the answer itself
        has_paraphrase = "paraphrased_answer" in ds.column_names
        prompts, answer_sets = self._scored[suite]
        # the forget suite's pass also keeps its gold answers' token statistics, for the privacy metrics
        scores = score_answer_sets(
            model,
            prompts,
            answer_sets,
            self.tokenizer.pad_token_id,
            eval_cfg.batch_size,
            precision,
            f"score {suite}",
            gold_stats=suite == "forget",
        )
        scores, gold = scores if suite == "forget" else (scores, None)
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
        if gold is not None:
            k, strict = float(self.cfg.mia.k), bool(self.cfg.extraction_strength.strict)
            per |= privacy.row_scores(gold, list(answers), k, strict)
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
            check_number(f"benchmark.max_new_tokens.{suite}", asked, Range(low=1, whole=True), "use auto")
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
            **privacy.summarize(evaluation, baselines),
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
            "holdout": content_key(self.holdout_rows),
            "privacy": {
                "k": self.cfg.mia.k,
                "gradnorm": self.gradnorm,
                "strict": self.cfg.extraction_strength.strict,
                "gibberish": self.cfg.gibberish.classifier,
            },
            "max_new_tokens": self.max_new_tokens,
            **self.encoding(),
        }


def _head(ds: Dataset, n: int | None) -> Dataset:
    return ds if n is None else ds.select(range(min(n, len(ds))))
