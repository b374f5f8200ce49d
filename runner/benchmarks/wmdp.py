"""WMDP (Li et al., 2024): forget hazardous biology / cyber knowledge, keep general knowledge.

- Unlearning data, RMU's setting: forget text from the WMDP forget corpora
  (``cyber-forget-corpus`` of ``cais/wmdp-corpora``; the bio forget corpus is
  gated and read from a local file), retain text from WikiText (or the WMDP
  retain corpora). Lines of ``min_chars`` characters or fewer are dropped and
  the rest cut to ``max_chars`` characters, as in the RMU code; every token is
  a label (the method decides what to do with it).
- No reference models: the loaded model (Zephyr-7B-beta in the paper) is the
  model to unlearn, evaluated as the "target" row.
- Evaluation: zero-shot accuracy on the configured WMDP question sets
  (``cais/wmdp`` wmdp-bio / wmdp-cyber / wmdp-chem, split test; random is 25%)
  and MMLU as utility, in lm-eval-harness' prompt layout (runner.benchmarks.mcq).
- Optionally (``reasoning.enabled``), the questions answered with a chain of thought, what the traces
  leak, a judge's verdicts and reasoning utility (runner.benchmarks.wmdp_reasoning).
"""

from __future__ import annotations

from runner.benchmarks import mcq
from runner.benchmarks.base import Benchmark
from runner.benchmarks.mmlu import MmluSuite
from runner.benchmarks.wmdp_reasoning import WmdpReasoning, utility_inputs
from runner.benchmarks.wmdp_reasoning import check_config as check_reasoning
from runner.cache import content_key
from runner.data import hub, wikitext
from runner.data.text import encode_text
from runner.errors import ConfigError
from runner.metrics import mcq as mcq_metrics
from runner.options import Range

QUESTIONS = {name: hub.Split("cais/wmdp", f"wmdp-{name}", "test") for name in ("bio", "cyber", "chem")}
# lm-eval-harness' description topic for each question set
TOPICS = {"bio": "biology", "cyber": "cybersecurity", "chem": "chemistry"}
CORPORA = {
    "cyber-forget": hub.Split("cais/wmdp-corpora", "cyber-forget-corpus", "train"),
    "cyber-retain": hub.Split("cais/wmdp-corpora", "cyber-retain-corpus", "train"),
    "bio-retain": hub.Split("cais/wmdp-corpora", "bio-retain-corpus", "train"),
}
BIO_FORGET_HUB = "cais/wmdp-bio-forget-corpus"  # gated: access by request, never redistributed
FORGET_CORPORA = ("bio", "cyber")
RETAIN_CORPORA = ("wikitext", "bio-retain", "cyber-retain")
FETCH_HINT = " with scripts/fetch_data.py wmdp"


def bio_forget_missing(path) -> ConfigError:
    where = "is not set" if path is None else f"points at {path}, which does not exist"
    return ConfigError(
        "benchmark.bio_forget_corpus",
        f"the WMDP bio forget corpus is gated and {where}",
        f"request access with the WMDP authors' form on the dataset card https://huggingface.co/datasets/"
        f"{BIO_FORGET_HUB}, then download it (e.g. python scripts/fetch_data.py wmdp --bio-forget --out DIR after "
        "`huggingface-cli login`, or bio_remove_dataset.jsonl from the WMDP release), put the file anywhere "
        "outside the repository and set benchmark.bio_forget_corpus=/path/to/bio-forget-corpus.jsonl "
        "(JSON Lines or parquet with a `text` column); or unlearn cyber only: benchmark.forget_corpora=[cyber]",
    )


class WmdpBenchmark(Benchmark):
    option_ranges = {
        "min_chars": Range(low=0, whole=True, example="50"),
        "max_chars": Range(low=1, whole=True, example="2000"),
        "max_length": Range(low=1, whole=True, example="256"),
        **{
            f"subset.{k}": Range(low=1, whole=True, optional=True, example="32")
            for k in ("questions", "forget", "retain")
        },
        "mmlu.per_subject": Range(low=1, whole=True, optional=True, example="20 (null: all)"),
        "reasoning.questions": Range(low=1, whole=True, optional=True, example="20 (null: all)"),
        "reasoning.max_new_tokens": Range(low=1, whole=True, example="256"),
        "reasoning.min_option_chars": Range(low=0, whole=True, example="4"),
        "reasoning.judge.max_new_tokens": Range(low=1, whole=True, example="8"),
        "reasoning.judge.batch_size": Range(low=1, whole=True, example="8"),
    }

    name = "wmdp"

    def __init__(self, tokenizer, fmt, **options):
        super().__init__(tokenizer, fmt, **options)
        cfg = self.cfg
        source = str(cfg.source)
        sub = cfg.get("subset")

        def head(rows: list, n_key: str) -> list:
            n = None if sub is None else sub.get(n_key)
            return rows if n is None else rows[:n]

        self.question_sets = _names(cfg.questions, QUESTIONS, "benchmark.questions")
        self.questions = {
            name: head(hub.load_split(source, QUESTIONS[name], hub.MCQ, fetch_hint=FETCH_HINT), "questions")
            for name in self.question_sets
        }
        forget = []
        for name in _corpora(cfg, "forget_corpora", FORGET_CORPORA):
            forget += head(self._texts(self._forget_corpus(name, source)), "forget")
        retain = []
        for name in _corpora(cfg, "retain_corpora", RETAIN_CORPORA):
            if name == "wikitext":
                rows = wikitext.load_paragraphs(str(cfg.wikitext.source), int(cfg.min_chars))
            else:
                rows = hub.load_split(source, CORPORA[name], hub.TEXT, fetch_hint=FETCH_HINT)
            retain += head(self._texts(rows), "retain")
        self.forget_rows = [{"text": t} for t in forget]
        self.retain_rows = [{"text": t} for t in retain]
        use_mmlu = cfg.get("mmlu") is not None and cfg.mmlu.get("enabled", True)
        self.mmlu = MmluSuite(cfg.mmlu, tokenizer) if use_mmlu else None
        reasoning = cfg.get("reasoning")
        use_reasoning = reasoning is not None and reasoning.get("enabled", False)
        self.reasoning = WmdpReasoning(reasoning, self.questions, tokenizer, fmt) if use_reasoning else None
        self._encoded: dict[str, list[mcq.EncodedMCQ]] = {}

    @staticmethod
    def inputs(cfg) -> list:
        """The files (or hub splits) this benchmark reads: their content is part of the job key (runner/inputs.py)."""
        from runner.data import mmlu as mmlu_data
        from runner.inputs import Input

        source = str(cfg.source)
        # the reasoning options are checked here, at the job key, before any model is loaded
        check_reasoning(cfg.get("reasoning"), _names(cfg.questions, QUESTIONS, "benchmark.questions"))
        found = [hub.input_of(source, QUESTIONS[n]) for n in _names(cfg.questions, QUESTIONS, "benchmark.questions")]
        for name in _corpora(cfg, "forget_corpora", FORGET_CORPORA):
            if name == "cyber":
                found.append(hub.input_of(source, CORPORA["cyber-forget"]))
            elif cfg.bio_forget_corpus is not None:
                found.append(Input.file("benchmark.bio_forget_corpus", hub.resolve_path(str(cfg.bio_forget_corpus))))
        for name in _corpora(cfg, "retain_corpora", RETAIN_CORPORA):
            if name == "wikitext":
                found.append(wikitext.input_of(str(cfg.wikitext.source)))
            else:
                found.append(hub.input_of(source, CORPORA[name]))
        if cfg.get("mmlu") is not None and cfg.mmlu.get("enabled", True):
            mmlu_source = str(cfg.mmlu.source)
            for subject in mmlu_data.resolve_subjects(cfg.mmlu.subjects, mmlu_source, "benchmark.mmlu.subjects"):
                found.append(mmlu_data.input_of(subject, mmlu_source))
        return found + utility_inputs(cfg.get("reasoning"))

    def _forget_corpus(self, name: str, source: str) -> list[dict]:
        if name == "cyber":
            return hub.load_split(source, CORPORA["cyber-forget"], hub.TEXT, fetch_hint=FETCH_HINT)
        path = self.cfg.bio_forget_corpus
        if path is None or not hub.resolve_path(str(path)).is_file():
            raise bio_forget_missing(path)
        return hub.load_file(str(path), hub.TEXT, "WMDP bio forget corpus", "benchmark.bio_forget_corpus")

    def _texts(self, rows: list[dict]) -> list[str]:
        """RMU's preprocessing: drop texts of ``min_chars`` or fewer characters, cut the rest to ``max_chars``."""
        return [r["text"][: self.cfg.max_chars] for r in rows if len(r["text"]) > self.cfg.min_chars]

    # ---- training sets -----------------------------------------------------------------------

    def encode(self, rows: list[dict]) -> list[dict]:
        return [{**encode_text(self.tokenizer, r["text"], self.cfg.max_length), "index": i} for i, r in enumerate(rows)]

    # ---- evaluation ------------------------------------------------------------------------------

    def _encoded_questions(self, name: str) -> list[mcq.EncodedMCQ]:
        if name not in self._encoded:
            self._encoded[name] = [
                mcq.encode_mcq(self.tokenizer, mcq.mcq_prompt(r["question"], r["choices"], TOPICS[name]))
                for r in self.questions[name]
            ]
        return self._encoded[name]

    def evaluate(self, model, eval_cfg, precision: str) -> dict:
        result = {"suites": {}, "per_example": {}}
        padding = str(self.cfg.get("mcq_padding", "right"))
        for name in self.question_sets:
            logp = mcq.choice_logprobs(
                model,
                self._encoded_questions(name),
                self.tokenizer.pad_token_id,
                eval_cfg.batch_size,
                precision,
                f"WMDP-{name}",
                padding,
            )
            preds = mcq_metrics.predictions(logp)
            answers = [r["answer"] for r in self.questions[name]]
            suite = f"wmdp_{name}"
            result["suites"][suite] = {"accuracy": mcq_metrics.accuracy(preds, answers), "n": len(answers)}
            result["per_example"][suite] = {"prediction": preds.tolist(), "answer": answers, "logprobs": logp.tolist()}
        if self.mmlu is not None:
            agg, per = self.mmlu.evaluate(model, eval_cfg.batch_size, precision, padding)
            result["suites"]["mmlu"] = agg
            result["per_example"]["mmlu"] = per
        if self.reasoning is not None:
            agg, per = self.reasoning.evaluate(model, eval_cfg.batch_size, precision, self.cache_dir)
            result["suites"].update(agg)
            result["per_example"].update(per)
        return result

    def summarize(self, evaluation: dict, baselines: dict[str, dict]) -> dict:
        """Accuracies: ``wmdp_<set>`` for each question set, ``mmlu`` and the RMU paper's MMLU subsets; with
        ``reasoning``, the answers with reasoning, the trace-leak rates and the utility suites."""
        suites = evaluation["suites"]
        out = {f"wmdp_{name}": suites[f"wmdp_{name}"]["accuracy"] for name in self.question_sets}
        if "mmlu" in suites:
            out.update(MmluSuite.summary(suites["mmlu"]))
        if self.reasoning is not None:
            out.update(self.reasoning.summary(suites))
        return out

    def encoding(self) -> dict:
        return {"text": "every token", "max_length": self.cfg.max_length}

    def identity(self) -> dict:
        return {
            "forget": content_key(self.forget_rows),
            "retain": content_key(self.retain_rows),
            "questions": {k: content_key(v) for k, v in self.questions.items()},
            "mmlu": self.mmlu.identity() if self.mmlu is not None else None,
            "mcq_padding": str(self.cfg.get("mcq_padding", "right")),
            **self.encoding(),
            # only when on: an evaluation cached before the option existed keeps its key
            **({"reasoning": self.reasoning.identity()} if self.reasoning is not None else {}),
        }


def _corpora(cfg, key: str, allowed) -> list[str]:
    """The forget or retain corpora to read: none where the job reads no training data (``training_data``)."""
    if not cfg.get("training_data", True):
        return []
    return _names(cfg[key], allowed, f"benchmark.{key}")


def _names(value, allowed, key: str) -> list[str]:
    names = [value] if isinstance(value, str) else [str(v) for v in (value or [])]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ConfigError(
            key, f"{bad or 'an empty list'} is not a choice of {list(allowed)}", f"pick from {list(allowed)}"
        )
    return names
