"""MUSE (Shi et al., 2024), News and Books: unlearn raw text, measure memorisation and privacy leakage.

- Unlearning data: the forget text (``raw`` split ``forget``, or a ``scal`` /
  ``sust`` split of News) and retain text (``raw`` split ``retain1``), cut
  into windows of ``max_length`` tokens; every token is a label.
- Reference models. ``build_references=true`` (offline, tiny models): the
  target is the loaded model fine-tuned on forget + retain text, the retain
  model (MUSE's "retrained" model) on the retain text only. With MUSE's own
  target model from the hub (``muse-bench/MUSE-news_target``), set
  ``build_references=false``: the loaded model is the target.
- Evaluation (runner.metrics.muse): VerbMem, ROUGE-L F1 between the greedy
  continuation of each ``verbmem`` prompt and its true continuation; KnowMem,
  ROUGE-L F1 of greedy answers to ``knowmem`` forget / retain questions after
  MUSE's in-context examples ("Question: q\\nAnswer: a\\n\\n" each); PrivLeak,
  from the Min-K% membership AUC between ``privleak`` forget and holdout
  texts, relative to the retrained model's AUC: ``privleak.retrain_auc`` when
  set, else the retain model's AUC.
"""

from __future__ import annotations

import math

import numpy as np

from runner import references
from runner.benchmarks import privacy
from runner.benchmarks.base import Benchmark
from runner.cache import content_key
from runner.data import hub
from runner.data.text import chunk_texts, encode_text
from runner.decoding.generate import greedy_generate
from runner.errors import ConfigError
from runner.metrics import muse as M
from runner.options import Range
from runner.retain_logs import read_retain_logs
from runner.scoring import sequence_token_stats

REPOS = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}
RAW_SPLITS = ("forget", "retain1", "retain2", "holdout")
FORGET_CONFIGS = {"news": ("raw", "scal", "sust"), "books": ("raw",)}
FETCH_HINT = " with scripts/fetch_data.py muse"
# a generated answer ends where MUSE's in-context layout would start the next example
ANSWER_STOPS = ("\n\n", "\nQuestion", "Question:")


def hub_splits(corpus: str) -> list[tuple[hub.Split, dict]]:
    """Every (split, schema) MUSE evaluation and unlearning read for ``corpus`` (scal / sust: see fetch_data)."""
    repo = REPOS[corpus]
    out = [(hub.Split(repo, "raw", s), hub.TEXT) for s in RAW_SPLITS]
    out += [
        (hub.Split(repo, "knowmem", s), hub.QA) for s in ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl")
    ]
    out += [(hub.Split(repo, "verbmem", "forget"), {"prompt": hub.STRING, "gt": hub.STRING})]
    out += [(hub.Split(repo, "privleak", s), hub.TEXT) for s in ("forget", "retain", "holdout")]
    return out


class MuseBenchmark(Benchmark):
    name = "muse"
    option_ranges = {
        "max_length": Range(low=1, whole=True, example="256"),
        "max_prompt_tokens": Range(low=1, whole=True, optional=True, example="512 (null: whole prompt)"),
        **{
            f"subset.{k}": Range(low=1, whole=True, optional=True, example="32")
            for k in ("forget", "retain", "verbmem", "knowmem", "privleak")
        },
        "verbmem.max_new_tokens": Range(low=1, whole=True, example="128"),
        "knowmem.max_new_tokens": Range(low=1, whole=True, example="32"),
        "knowmem.icl_examples": Range(low=0, whole=True, optional=True, example="null"),
        "privleak.k": Range(low=0, high=1, low_open=True, example="0.4 (MUSE's 40%)"),
        "privleak.retrain_auc": Range(low=0, high=1, optional=True, example="0.5393"),
        "mia.gradnorm_batch": Range(low=1, whole=True, example="2"),
    }

    @classmethod
    def finetunes(cls, cfg) -> list[str]:
        built = ["target", "retain"] if cfg.get("build_references") else []
        return [kind for kind in built if kind not in references.given(cfg)]

    @staticmethod
    def inputs(cfg) -> list:
        """The files (or hub splits) this benchmark reads: their content is part of the job key (runner/inputs.py)."""
        corpus = str(cfg.corpus)
        if corpus not in REPOS:
            return []  # refused with its own message when the benchmark is built
        splits = [split for split, _ in hub_splits(corpus)]
        splits.append(hub.Split(REPOS[corpus], str(cfg.forget.config), str(cfg.forget.split)))
        return [hub.input_of(str(cfg.source), s) for s in dict.fromkeys(splits)] + references.inputs(cfg)

    def __init__(self, tokenizer, fmt, **options):
        super().__init__(tokenizer, fmt, **options)
        cfg = self.cfg
        corpus = str(cfg.corpus)
        if corpus not in REPOS:
            raise ConfigError("benchmark.corpus", f"`{corpus}` is not a MUSE corpus", "use news or books")
        self.corpus, self.repo = corpus, REPOS[corpus]
        forget_cfg = str(cfg.forget.config)
        if forget_cfg not in FORGET_CONFIGS[corpus]:
            raise ConfigError(
                "benchmark.forget.config",
                f"MUSE-{corpus.capitalize()} has no forget config `{forget_cfg}`",
                f"use one of {list(FORGET_CONFIGS[corpus])}",
            )
        self.build_references = bool(cfg.build_references)
        self.ready_models = references.ready_models(cfg)
        self.retain_log = read_retain_logs(str(cfg.retain_logs), cfg) if cfg.get("retain_logs") else None
        if not self.build_references and cfg.privleak.retrain_auc is None and self.retain_log is None:
            raise ConfigError(
                "benchmark.privleak.retrain_auc",
                "PrivLeak needs the retrained model's AUC, and build_references=false builds no retain model",
                "set benchmark.privleak.retrain_auc (MUSE's retrained Llama-2-7B, Min-40%: news 0.4772, books "
                "0.5393), benchmark.retain_logs (its MUSE_EVAL.json), or build_references=true",
            )
        source = str(cfg.source)
        sub = cfg.get("subset")

        def n(key: str):
            return None if sub is None else sub.get(key)

        def load(config: str, split: str, schema: dict) -> list[dict]:
            return hub.load_split(source, hub.Split(self.repo, config, split), schema, fetch_hint=FETCH_HINT)

        forget_texts = [r["text"] for r in load(forget_cfg, str(cfg.forget.split), hub.TEXT)]
        retain_texts = [r["text"] for r in load("raw", str(cfg.retain_split), hub.TEXT)]
        self.forget_rows = [{"text": t} for t in self._windows(forget_texts, n("forget"))]
        self.retain_rows = [{"text": t} for t in self._windows(retain_texts, n("retain"))]
        built = {"target": self.forget_rows + self.retain_rows, "retain": self.retain_rows}
        not_built = references.given(cfg)
        self.finetuned_models = {k: v for k, v in built.items() if k not in not_built} if self.build_references else {}

        def head(rows: list, key: str) -> list:
            return rows if n(key) is None else rows[: n(key)]

        icl_n = cfg.knowmem.icl_examples
        self.verbmem = head(load("verbmem", "forget", {"prompt": hub.STRING, "gt": hub.STRING}), "verbmem")
        self.knowmem = {
            part: {
                "qa": head(load("knowmem", f"{part}_qa", hub.QA), "knowmem"),
                "icl": load("knowmem", f"{part}_qa_icl", hub.QA)[: None if icl_n is None else int(icl_n)],
            }
            for part in ("forget", "retain")
        }
        self.privleak = {
            part: [r["text"] for r in head(load("privleak", part, hub.TEXT), "privleak")]
            for part in ("forget", "holdout")
        }

    def _windows(self, texts: list[str], limit) -> list[str]:
        if not self.cfg.chunk:
            return texts if limit is None else texts[:limit]
        return chunk_texts(self.tokenizer, texts, int(self.cfg.max_length), limit)

    # ---- training sets ---------------------------------------------------------------------------

    def encode(self, rows: list[dict]) -> list[dict]:
        return [{**encode_text(self.tokenizer, r["text"], self.cfg.max_length), "index": i} for i, r in enumerate(rows)]

    # ---- evaluation ------------------------------------------------------------------------------

    def evaluate(self, model, eval_cfg, precision: str) -> dict:
        bs = eval_cfg.batch_size
        suites, per = {}, {}

        prompts = [self._tail(self.tokenizer(r["prompt"])["input_ids"]) for r in self.verbmem]
        gens = greedy_generate(
            model, self.tokenizer, prompts, self.cfg.verbmem.max_new_tokens, bs, precision, "VerbMem"
        )
        # as MUSE: the true continuation is cut to the generated length before ROUGE-L F1
        limit = self.cfg.verbmem.max_new_tokens
        truths = [
            self.tokenizer.decode(
                self.tokenizer(r["gt"], add_special_tokens=False)["input_ids"][:limit], skip_special_tokens=True
            )
            for r in self.verbmem
        ]
        rouge = M.rouge_l_f1(gens, truths)
        suites["verbmem_forget"] = {"rouge_l_f1": _mean(rouge), "n": len(rouge)}
        per["verbmem_forget"] = {"rouge_l_f1": rouge, "generation": gens}

        for part in ("forget", "retain"):
            qa, icl = self.knowmem[part]["qa"], self.knowmem[part]["icl"]
            context = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in icl)
            prompts = [
                self._tail(self.tokenizer(f"{context}Question: {r['question']}\nAnswer: ")["input_ids"]) for r in qa
            ]
            raw = greedy_generate(
                model,
                self.tokenizer,
                prompts,
                self.cfg.knowmem.max_new_tokens,
                bs,
                precision,
                f"KnowMem {part}",
                strip=False,  # MUSE cuts at the stop strings first, then strips
            )
            answers = [_cut(g) for g in raw]
            rouge = M.rouge_l_f1(answers, [r["answer"] for r in qa])
            suites[f"knowmem_{part}"] = {"rouge_l_f1": _mean(rouge), "n": len(rouge)}
            per[f"knowmem_{part}"] = {"rouge_l_f1": rouge, "generation": answers}

        k = float(self.cfg.privleak.k)
        scores, family = {}, {}
        strict = bool(self.cfg.extraction_strength.strict)
        gradnorm = [str(p) for p in self.cfg.mia.gradnorm]
        for part in ("forget", "holdout"):
            encoded = [encode_text(self.tokenizer, t, self.cfg.max_length) for t in self.privleak[part]]
            # one pass: the token log-probs of Min-K% and the statistics of the whole privacy family
            stats = sequence_token_stats(model, encoded, self.tokenizer.pad_token_id, bs, precision, f"PrivLeak {part}")
            scores[part] = [M.min_k_score(s["logprob"], k) for s in stats]
            family[part] = privacy.row_scores(stats, self.privleak[part], k, strict)
            if gradnorm:
                family[part] |= privacy.gradnorm_scores(
                    model, encoded, gradnorm, precision, int(self.cfg.mia.gradnorm_batch)
                )
        auc = M.auc(scores["forget"], scores["holdout"])
        suites["privleak"] = {
            "auc": auc,
            "k": k,
            "n_forget": len(scores["forget"]),
            "n_holdout": len(scores["holdout"]),
        }
        per["privleak"] = {"min_k_forget": scores["forget"], "min_k_holdout": scores["holdout"]}
        # the privacy family on the same texts, in open-unlearning's orientation (runner/benchmarks/privacy.py)
        per["forget"], per["holdout"] = family["forget"], family["holdout"]
        suites["mia"] = privacy.aucs(family["forget"], family["holdout"])
        return {"suites": suites, "per_example": per}

    def _tail(self, ids: list[int]) -> list[int]:
        """Keep the last ``max_prompt_tokens`` prompt tokens (the text right before what is generated)."""
        n = self.cfg.get("max_prompt_tokens")
        return ids if n is None or len(ids) <= n else ids[-int(n) :]

    def summarize(self, evaluation: dict, baselines: dict[str, dict]) -> dict:
        s = evaluation["suites"]
        retrain_auc = self.cfg.privleak.retrain_auc  # a number given > the retain log > the retain model
        if retrain_auc is None and self.retain_log is not None:
            retrain_auc = self.retain_log.muse_auc()
        if retrain_auc is None and "retain" in baselines:
            retrain_auc = baselines["retain"]["suites"]["privleak"]["auc"]
        auc = s["privleak"]["auc"]
        # MUSE's own PrivLeak below (it honours privleak.retrain_auc); the rest of the family from here
        family = privacy.summarize(evaluation, baselines, with_privleak=False)
        # null (with its declared reason, runner/output/metrics.py) rather than NaN: no retrain AUC, or one of 0
        privleak = M.privleak(auc, float(retrain_auc)) if retrain_auc is not None else None
        return family | {
            "verbmem_forget": s["verbmem_forget"]["rouge_l_f1"],
            "knowmem_forget": s["knowmem_forget"]["rouge_l_f1"],
            "knowmem_retain": s["knowmem_retain"]["rouge_l_f1"],
            "privleak": privleak if privleak is not None and math.isfinite(privleak) else None,
            "privleak_auc": auc,
        }

    def encoding(self) -> dict:
        return {"text": "every token", "max_length": self.cfg.max_length}

    def identity(self) -> dict:
        return {
            "corpus": self.corpus,
            "forget": content_key(self.forget_rows),
            "retain": content_key(self.retain_rows),
            "verbmem": content_key(self.verbmem),
            "knowmem": content_key(self.knowmem),
            "privleak": content_key(self.privleak),
            "generation": {
                "verbmem": self.cfg.verbmem.max_new_tokens,
                "knowmem": self.cfg.knowmem.max_new_tokens,
                "max_prompt_tokens": self.cfg.get("max_prompt_tokens"),
            },
            "k": self.cfg.privleak.k,
            "privacy": {"gradnorm": list(self.cfg.mia.gradnorm), "strict": self.cfg.extraction_strength.strict},
            **self.encoding(),
        }


def _cut(generation: str) -> str:
    """MUSE's answer: the raw generation up to the first stop string, then stripped (a leading blank line ends it)."""
    for stop in ANSWER_STOPS:
        generation = generation.split(stop)[0]
    return generation.strip()


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
