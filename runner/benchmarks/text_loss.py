"""Loss on named text sets: the measurement of the task-arithmetic paper (arXiv 2504.10957).

Task negation is judged by what happens to the model's loss on three kinds of text as the
negation strength grows: the text it fine-tuned on and then negated (``forget``: the loss should
rise), text about the same subject in other words (``aligned``: it follows the forget loss if the
negation removes knowledge rather than wording) and unrelated text (``irrelevant``: it should stay
flat). This benchmark scores any number of such sets; the one named by ``unlearn_set`` is what the
method unlearns.

Each set is read from one source (``kind``):

- ``tofu``: a TOFU config's column, e.g. ``forget01`` ``answer`` or ``forget01_perturbed``
  ``paraphrased_answer`` (the same facts reworded: an aligned text);
- ``wikitext``: WikiText-2 paragraphs (shipped, or the hub's raw test split);
- ``hub``: a text split of a hub data set (``repo``, ``config``, ``split``; e.g. MUSE-Books'
  Harry Potter text), or a directory laid out like the hub;
- ``file``: a JSON Lines file with a ``text`` column.

A set with ``chunk: true`` is cut into ``max_length``-token windows first (whole books, as MUSE
stores them), ``limit`` then counting windows.

Per set: the token-weighted mean NLL over every token a causal LM can predict, and its
perplexity; per text, the mean NLL.
"""

from __future__ import annotations

import math

import numpy as np

from runner.benchmarks.base import Benchmark
from runner.cache import content_key
from runner.data import hub, wikitext
from runner.data import tofu as tofu_data
from runner.data.text import chunk_texts, encode_text
from runner.errors import ConfigError
from runner.options import Range, check_number
from runner.scoring import token_logprobs

KINDS = ("tofu", "wikitext", "hub", "file")
LIMIT = Range(low=1, whole=True, optional=True, example="null (every text)")


def _key(name: str, option: str) -> str:
    return f"benchmark.sets.{name}.{option}"


def load_texts(name: str, spec, tokenizer=None, max_length: int = 256) -> list[str]:
    """The texts of set ``name`` as its ``spec`` describes them: the first ``limit`` of them, or of their
    ``max_length``-token windows with ``chunk: true``."""
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ConfigError(_key(name, "kind"), f"`{kind}` is not a text source", f"use one of {', '.join(KINDS)}")
    source = str(spec.get("source", "local"))
    if kind == "tofu":
        field = str(spec.get("field", "answer"))
        rows = tofu_data.load_config(str(spec.split), source)
        if field not in rows.column_names:
            raise ConfigError(
                _key(name, "field"),
                f"TOFU config `{spec.split}` has no column `{field}`",
                f"use one of {rows.column_names}",
            )
        texts = [str(t) for t in rows[field]]
    elif kind == "wikitext":
        texts = [r["text"] for r in wikitext.load_paragraphs(source, key=_key(name, "source"))]
    elif kind == "hub":
        split = hub.Split(str(spec.repo), str(spec.config), str(spec.split))
        texts = [r["text"] for r in hub.load_split(source, split, hub.TEXT, _key(name, "source"))]
    else:
        texts = [r["text"] for r in hub.load_file(str(spec.path), hub.TEXT, f"text set `{name}`", _key(name, "path"))]
    limit = spec.get("limit")
    check_number(_key(name, "limit"), limit, LIMIT)
    if spec.get("chunk", False):
        texts = chunk_texts(tokenizer, texts, max_length, None if limit is None else int(limit))
    texts = texts if limit is None else texts[: int(limit)]
    if not texts:
        raise ConfigError(_key(name, "limit"), f"text set `{name}` is empty", "point it at a source with texts")
    return texts


def set_inputs(name: str, spec) -> list:
    """The file or hub split set ``name`` reads, as a job input (runner/inputs.py)."""
    from runner.inputs import Input

    kind, source = spec.get("kind"), str(spec.get("source", "local"))
    if kind == "tofu":
        return [tofu_data.input_of(str(spec.split), source)]
    if kind == "wikitext":
        return [wikitext.input_of(source, _key(name, "source"))]
    if kind == "hub":
        return [
            hub.input_of(source, hub.Split(str(spec.repo), str(spec.config), str(spec.split)), _key(name, "source"))
        ]
    if kind == "file":
        return [Input.file(_key(name, "path"), hub.resolve_path(str(spec.path)))]
    raise ConfigError(_key(name, "kind"), f"`{kind}` is not a text source", f"use one of {', '.join(KINDS)}")


def set_loss(token_logps: list) -> tuple[float, list[float]]:
    """Token-weighted mean NLL over all texts, and each text's own mean NLL."""
    per_text = [float(-lp.mean()) for lp in token_logps]
    total = float(-np.concatenate(token_logps).sum()) / sum(len(lp) for lp in token_logps)
    return total, per_text


class TextLossBenchmark(Benchmark):
    # the shipped config's three sets; load_texts checks the limit of any other set by the same rule
    option_ranges = {
        "max_length": Range(low=2, whole=True, example="256"),
        **{f"sets.{name}.limit": LIMIT for name in ("forget", "aligned", "irrelevant")},
    }
    name = "text_loss"

    def __init__(self, tokenizer, fmt, **options):
        super().__init__(tokenizer, fmt, **options)
        sets = self.cfg.get("sets") or {}
        if not sets:
            raise ConfigError("benchmark.sets", "no text set is named", "name at least the set to unlearn")
        self.texts = {name: load_texts(name, spec, tokenizer, int(self.cfg.max_length)) for name, spec in sets.items()}
        for option in ("unlearn_set", "retain_set"):
            chosen = self.cfg.get(option)
            if chosen is not None and chosen not in self.texts:
                raise ConfigError(
                    f"benchmark.{option}", f"`{chosen}` is not one of the sets", f"use one of {list(self.texts)}"
                )
        self.forget_rows = [{"text": t} for t in self.texts[self.cfg.unlearn_set]]
        retain = self.cfg.get("retain_set")
        self.retain_rows = [{"text": t} for t in self.texts[retain]] if retain is not None else []
        self._encoded = {name: self.encode([{"text": t} for t in texts]) for name, texts in self.texts.items()}

    @staticmethod
    def inputs(cfg) -> list:
        return [found for name, spec in (cfg.get("sets") or {}).items() for found in set_inputs(name, spec)]

    def encode(self, rows: list[dict]) -> list[dict]:
        return [{**encode_text(self.tokenizer, r["text"], self.cfg.max_length), "index": i} for i, r in enumerate(rows)]

    def evaluate(self, model, eval_cfg, precision: str) -> dict:
        result = {"suites": {}, "per_example": {}}
        pad_id = self.tokenizer.pad_token_id
        for name, encoded in self._encoded.items():
            logps = token_logprobs(model, encoded, pad_id, eval_cfg.batch_size, precision, f"text loss: {name}")
            loss, per_text = set_loss(logps)
            result["suites"][name] = {"nll": loss, "perplexity": math.exp(loss), "n": len(encoded)}
            result["per_example"][name] = {"nll": per_text}
        return result

    def summarize(self, evaluation: dict, baselines: dict[str, dict]) -> dict:
        """``<set>_nll`` and ``<set>_ppl`` for every set."""
        out = {}
        for name, suite in evaluation["suites"].items():
            out[f"{name}_nll"] = suite["nll"]
            out[f"{name}_ppl"] = suite["perplexity"]
        return out

    def encoding(self) -> dict:
        return {"text": "every token", "max_length": self.cfg.max_length}

    def identity(self) -> dict:
        return {"sets": {name: content_key(texts) for name, texts in self.texts.items()}, **self.encoding()}
