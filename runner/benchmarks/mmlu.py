"""MMLU as a utility suite: zero-shot accuracy overall, per subject, and on the RMU paper's four subsets.

Used by WMDP (forgetting hazardous knowledge must keep general knowledge), and on its own as
``benchmark=mmlu`` (``MmluBenchmark``) for an evaluation-only job.
Overall accuracy is over all evaluated questions (lm-eval's size-weighted
``mmlu`` group); ``mmlu_<subject>`` is reported for each of the RMU paper's
subsets (college biology, virology, college computer science, computer
security) that is evaluated.
"""

from __future__ import annotations

from runner.benchmarks import mcq
from runner.benchmarks.base import Benchmark
from runner.cache import content_key
from runner.data import mmlu as mmlu_data
from runner.errors import ConfigError
from runner.metrics import mcq as mcq_metrics
from runner.options import Range


class MmluSuite:
    """``cfg``: ``source`` (local | hub | directory), ``subjects`` (all or a list), ``per_subject`` (first N)."""

    def __init__(self, cfg, tokenizer, key: str = "benchmark.mmlu"):
        source = str(cfg.source)
        self.subjects = mmlu_data.resolve_subjects(cfg.subjects, source, f"{key}.subjects")
        n = cfg.get("per_subject")
        self.rows = []
        for subject in self.subjects:
            rows = mmlu_data.load_subject(subject, source, f"{key}.source")
            self.rows += rows if n is None else rows[:n]
        self.tokenizer = tokenizer
        self._encoded = None

    def encoded(self) -> list[mcq.EncodedMCQ]:
        if self._encoded is None:
            self._encoded = [
                mcq.encode_mcq(
                    self.tokenizer, mcq.mcq_prompt(r["question"], r["choices"], mcq.subject_topic(r["subject"]))
                )
                for r in self.rows
            ]
        return self._encoded

    def evaluate(self, model, batch_size: int, precision: str, padding: str = "right") -> tuple[dict, dict]:
        """(aggregate, per-example) for the suite."""
        logp = mcq.choice_logprobs(
            model, self.encoded(), self.tokenizer.pad_token_id, batch_size, precision, "MMLU", padding
        )
        preds = mcq_metrics.predictions(logp)
        answers = [r["answer"] for r in self.rows]
        subjects = [r["subject"] for r in self.rows]
        agg = {
            "accuracy": mcq_metrics.accuracy(preds, answers),
            "n": len(self.rows),
            "subjects": mcq_metrics.grouped_accuracy(preds, answers, subjects),
        }
        per = {"prediction": preds.tolist(), "answer": answers, "subject": subjects, "logprobs": logp.tolist()}
        return agg, per

    @staticmethod
    def summary(agg: dict) -> dict[str, float]:
        """``mmlu`` and ``mmlu_<subset>`` for the RMU paper's subsets that were evaluated."""
        out = {"mmlu": agg["accuracy"]}
        for subject in mmlu_data.PAPER_SUBSETS:
            if subject in agg["subjects"]:
                out[f"mmlu_{subject}"] = agg["subjects"][subject]
        return out

    def identity(self) -> str:
        return content_key(self.rows)


class MmluBenchmark(Benchmark):
    """``benchmark=mmlu``: MMLU on its own, for an evaluation-only job (``method=none``); no forget or retain
    set, so it unlearns nothing. Options as WMDP's ``mmlu`` node (``source``, ``subjects``, ``per_subject``)
    plus ``mcq_padding``."""

    option_ranges = {"per_subject": Range(low=1, whole=True, optional=True, example="null (every question)")}

    name = "mmlu"
    evaluation_only = True  # no forget or retain set: method=none only (runner.evaluate.check_config)

    def __init__(self, tokenizer, fmt, **options):
        super().__init__(tokenizer, fmt, **options)
        self.suite = MmluSuite(self.cfg, tokenizer, key="benchmark")

    @staticmethod
    def inputs(cfg) -> list:
        source = str(cfg.source)
        return [
            mmlu_data.input_of(s, source, "benchmark.source")
            for s in mmlu_data.resolve_subjects(cfg.subjects, source, "benchmark.subjects")
        ]

    def encode(self, rows: list[dict]) -> list[dict]:
        raise ConfigError("method", "benchmark=mmlu only evaluates (it has no forget or retain set)", "use method=none")

    def encoding(self) -> dict:
        return {"mcq_padding": str(self.cfg.get("mcq_padding", "right"))}

    def identity(self) -> dict:
        return {"mmlu": self.suite.identity(), **self.encoding()}

    def evaluate(self, model, eval_cfg, precision: str) -> dict:
        agg, per = self.suite.evaluate(model, eval_cfg.batch_size, precision, self.encoding()["mcq_padding"])
        return {"suites": {"mmlu": agg}, "per_example": {"mmlu": per}}

    def summarize(self, evaluation: dict, baselines: dict[str, dict]) -> dict:
        return MmluSuite.summary(evaluation["suites"]["mmlu"])
