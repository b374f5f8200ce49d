"""A reasoning model's own traces about the forget documents, and the chains of thought to keep (R²MU).

x_trace (arXiv 2506.12963): each forget document, cut to ``prompt_tokens`` tokens, is followed by
the cue ("\\nLet's reason this step by step.\\n") and the model's start-of-thinking tag; the model
(theta_0) continues greedily for ``new_tokens`` tokens. Training reads the cue (with the tag) and
the first ``train_tokens`` tokens of each continuation. A model without a start-of-thinking tag
(``model.prompt.think_start`` unset, e.g. SmolLM2) gets the cue alone: its continuation is then
whatever the model writes after "Let's reason this step by step", its nearest thing to a trace.

Generation is the expensive part (every forget document, ``new_tokens`` each), and it is
deterministic given the model, the prompts and the precision, so its result is cached
content-addressed (``<cache>/r2mu_traces/<key>``) through ``runner.cache.CacheEntry``: written in a
private temporary directory and renamed into place once complete, so an interrupted generation
leaves no entry, and a second job with the same key generates nothing (logged as a cache hit).

A fixed share of the documents (``holdout``, drawn with the job's seed) is kept out of training:
their trace inputs measure, before and after unlearning, how far the traces' activations moved
towards the control vector, for R²MU and plain RMU alike (the same documents, the same traces).

x_cot: the chains of thought of a ``traces`` config (``conf/traces``; GAIR/LIMO in the paper, the
shipped GSM8K training solutions offline), each followed by the model's end-of-thinking tag.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, fields
from pathlib import Path

from runner.cache import CacheEntry, content_key
from runner.cache_schema import TRACES, count_problem, read_checked
from runner.errors import ConfigError
from runner.options import Range, check_number

log = logging.getLogger(__name__)
CUE = "\nLet's reason this step by step.\n"
TRACES_FILE = "traces.json"


SETTING_RANGES = {
    "prompt_tokens": Range(low=1, whole=True, example="512"),
    "new_tokens": Range(low=1, whole=True, example="1024"),
    "train_tokens": Range(low=1, whole=True, example="100"),
    "holdout": Range(low=0, high=1, high_open=True, example="0.125 (0: measure nothing)"),
    "batch_size": Range(low=1, whole=True, example="8"),
}
# as a method's ``traces`` node declares them (RMU, R²MU): checked with the job's config
TRACE_RANGES = {f"traces.{name}": allowed for name, allowed in SETTING_RANGES.items()}


@dataclass(frozen=True)
class TraceSettings:
    """How the traces are made and used; the options of ``method.traces``."""

    cue: str = CUE
    prompt_tokens: int = 512  # forget document tokens in front of the cue
    new_tokens: int = 1024  # greedy continuation length
    train_tokens: int = 100  # continuation tokens a trace input keeps
    holdout: float = 0.125  # share of documents whose traces are only measured, never trained on
    batch_size: int = 8  # prompts per generation batch

    @classmethod
    def from_options(cls, options, key: str) -> TraceSettings:
        """Checked settings from a config node (``key``: where it sits, for messages)."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}", "is not an option of the traces", f"use {sorted(known)}")
        settings = cls(**options)
        for name, allowed in SETTING_RANGES.items():
            check_number(f"{key}.{name}", getattr(settings, name), allowed)
        if settings.train_tokens > settings.new_tokens:
            raise ConfigError(
                f"{key}.train_tokens",
                f"{settings.train_tokens} exceeds the {settings.new_tokens} generated tokens ({key}.new_tokens)",
                f"set {key}.train_tokens <= {key}.new_tokens",
            )
        return settings


def cue_ids(tokenizer, settings: TraceSettings, think_start: str | None) -> list[int]:
    """The cue and the start-of-thinking tag, as tokens (no special tokens)."""
    return tokenizer.encode(settings.cue + (think_start or ""), add_special_tokens=False)


def trace_prompts(tokenizer, texts: list[str], settings: TraceSettings, think_start: str | None) -> list[list[int]]:
    """Each document's first ``prompt_tokens`` tokens (the tokenizer's special tokens included), cue, tag."""
    tail = cue_ids(tokenizer, settings, think_start)
    return [tokenizer(t, add_special_tokens=True)["input_ids"][: settings.prompt_tokens] + tail for t in texts]


def trace_key(model_identity: dict, prompts: list[list[int]], settings: TraceSettings, precision: str) -> str:
    # the prompt tokens carry the forget texts, their cut, the cue and the tag; the rest decides the continuation
    return content_key(
        {
            "model": model_identity,
            "prompts": content_key(prompts),
            "cue": settings.cue,
            "prompt_tokens": settings.prompt_tokens,
            "new_tokens": settings.new_tokens,
            "precision": precision,
        }
    )


def generate_traces(
    model,
    tokenizer,
    prompts: list[list[int]],
    settings: TraceSettings,
    precision: str,
    cache_dir,
    model_identity: dict,
) -> list[list[int]]:
    """The greedy continuation (token ids, cut at the first end-of-sequence token) of each prompt, from the cache
    when an entry with this key is complete; built and stored atomically otherwise."""
    key = trace_key(model_identity, prompts, settings, precision)
    entry = CacheEntry(
        cache_dir,
        "r2mu_traces",
        key,
        f"reasoning traces of {len(prompts)} forget documents",
        check=lambda path: _traces_problem(path, len(prompts)),
    )
    if entry.ready():  # checked: one continuation per document, token ids (see _traces_problem)
        return json.loads((entry.path / TRACES_FILE).read_text())["continuations"]
    try:
        building = entry.start()
        continuations = _generate(model, tokenizer, prompts, settings, precision)
        (building / TRACES_FILE).write_text(json.dumps({"continuations": continuations}))
        entry.finish({"documents": len(prompts), "new_tokens": settings.new_tokens, "cue": settings.cue})
    except BaseException:
        entry.abandon()  # the temporary directory goes; no entry is left behind
        raise
    return continuations


def _traces_problem(entry: Path, documents: int) -> str | None:
    """What is wrong with an entry's traces file, if anything: unreadable, not token ids, or built for a different
    number of documents (an entry holding some documents' traces only)."""
    value, problem = read_checked(
        entry / TRACES_FILE, TRACES, lambda v: count_problem("traces", len(v["continuations"]), documents)
    )
    return f"{TRACES_FILE}: {problem}" if problem else None


def _generate(model, tokenizer, prompts, settings: TraceSettings, precision: str) -> list[list[int]]:
    # greedy_ids is greedy_generate's engine, called for the token ids themselves: greedy_generate decodes
    # without special tokens, and a closing </think> would vanish from the trace
    from runner.decoding.generate import greedy_ids
    from runner.scoring import unwrap

    m = unwrap(model)
    was_training = m.training
    m.eval()
    start = time.perf_counter()
    try:
        ids = greedy_ids(
            m, tokenizer, prompts, settings.new_tokens, settings.batch_size, precision, "R²MU traces", vllm_ok=True
        )
    finally:
        m.train(was_training)
    seconds, tokens = time.perf_counter() - start, sum(len(row) for row in ids)
    log.info(
        "R²MU: generated %d traces, %d tokens in %.1f s (%.1f tokens/s)",
        len(prompts),
        tokens,
        seconds,
        tokens / max(seconds, 1e-9),
    )
    return ids


def trace_inputs(tokenizer, continuations: list[list[int]], settings: TraceSettings, think_start: str | None):
    """Training examples: the tokenizer's special tokens, the cue and tag, the first ``train_tokens`` tokens of
    each continuation; every token counts (``index``: position in ``continuations``)."""
    head = tokenizer(settings.cue + (think_start or ""), add_special_tokens=True)["input_ids"]
    out = []
    for i, cont in enumerate(continuations):
        ids = head + list(cont[: settings.train_tokens])
        out.append({"input_ids": ids, "labels": list(ids), "index": i})
    return out


def holdout_split(n: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    """(trained, held out) positions of ``n`` documents: ceil(share * n) held out, drawn with ``seed``."""
    k = math.ceil(share * n) if share > 0 else 0
    held = sorted(random.Random(f"r2mu-trace-holdout:{seed}").sample(range(n), min(k, n)))
    kept = [i for i in range(n) if i not in set(held)]
    return kept, held


def reindex(examples: list[dict]) -> list[dict]:
    """The examples with ``index`` 0..n-1 in order (the activation cache keys on it)."""
    return [{**e, "index": i} for i, e in enumerate(examples)]


# ---- the chains of thought to keep ---------------------------------------------------------------------


def cot_inputs(tokenizer, texts: list[str], think_end: str | None, max_tokens: int) -> list[dict]:
    """Each chain of thought (special tokens included) cut so that the end-of-thinking tag still fits after it."""
    tag = tokenizer.encode(think_end, add_special_tokens=False) if think_end else []
    out = []
    for i, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=True)["input_ids"][: max(1, max_tokens - len(tag))] + tag
        out.append({"input_ids": ids, "labels": list(ids), "index": i})
    return out


def load_cot(cot_cfg, key: str = "method.cot") -> list[str]:
    """The chains of thought of a ``traces`` config: each trace's thinking (the final answer left out)."""
    from runner.distill.traces import load_traces

    texts = [t.thinking for t in load_traces(cot_cfg, key) if t.thinking.strip()]
    if not texts:
        raise ConfigError(key, "holds no chain of thought", f"point {key} at a data set with non-empty solutions")
    return texts
