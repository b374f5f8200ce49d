"""Batched, KV-cached generation under a decoding strategy: the entry points every generating job calls.

Prompts are sorted by length and cut into batches of ``batch_size`` sequences (a problem with ``n``
samples takes ``n`` of them), left-padded, and decoded by :func:`runner.decoding.loop.decode_batch`
with the strategy's logits processors and sampler, the tokens ``model.generate`` would give. Each
generation is cut at its first end-of-sequence token. Whether the step is compiled on a static cache
is the job's ``generation.compile`` (:mod:`runner.decoding.engine`); the bar counts tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from transformers import RepetitionPenaltyLogitsProcessor

from runner.decoding import engine
from runner.decoding.base import DecodingContext
from runner.decoding.loop import argmax, decode_batch
from runner.decoding.processors import sampling_warpers
from runner.decoding.progress import TokenBar
from runner.decoding.static_step import decoder_for
from runner.decoding.strategies import Decoding
from runner.scoring import unwrap


@dataclass
class Generated:
    """One generated continuation: its tokens up to (not including) the first end-of-sequence token."""

    ids: list[int]
    text: str


@dataclass
class GenerationRun:
    outputs: list[list[Generated]]  # per prompt, its n samples
    tokens: int = 0  # generated tokens, all samples
    seconds: float = 0.0
    stats: dict = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def eos_token_ids(model, tokenizer) -> set[int]:
    """The tokenizer's end-of-sequence token and the model's generation_config ones."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(unwrap(model).generation_config, "eos_token_id", None)
    if configured is not None:
        ids |= set(configured) if isinstance(configured, (list, tuple)) else {configured}
    return ids


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: list[list[int]],
    strategy,
    ctx: DecodingContext,
    max_new_tokens: int,
    batch_size: int,
    precision: str,
    desc: str = "generate",
    observers=None,
    eos_ids: set[int] | None = None,
    repetition_penalty: float | None = None,
    vllm_ok: bool = False,
) -> GenerationRun:
    """``strategy.n`` continuations of each prompt (token-id lists), in prompt order.

    ``observers``: a function returning fresh processors that watch each batch after the
    strategy's (e.g. :class:`runner.decoding.processors.TokenProbability`); their ``flush()``
    runs when the batch is done. ``eos_ids``: the tokens that end a row (default: the tokenizer's and the
    model's generation_config's). ``repetition_penalty``: transformers' penalty, applied first, as
    ``model.generate`` does. Rows stay in the batch until it is done (see :mod:`runner.decoding.loop`).
    ``vllm_ok``: the caller's generation may go through vLLM when the job chose ``generation.backend=vllm``
    (reasoning benchmarks, traces).
    """
    m = unwrap(model)
    if vllm_ok and engine.settings().backend == "vllm":
        return _through_vllm(m, tokenizer, prompts, strategy, ctx, max_new_tokens, precision, desc, observers, eos_ids)
    n = strategy.n
    per_batch = max(1, batch_size // n)  # problems per batch: batch_size counts sequences
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    eos = set(eos_ids) if eos_ids is not None else eos_token_ids(m, tokenizer)
    outputs: list[list[Generated]] = [[] for _ in prompts]
    if strategy.do_sample:
        torch.manual_seed(strategy.seed)
    kw = strategy.generate_kwargs()
    warpers = sampling_warpers(kw["do_sample"], kw.get("temperature"), kw.get("top_p"))
    penalty = [RepetitionPenaltyLogitsProcessor(repetition_penalty)] if repetition_penalty not in (None, 1.0) else []
    run = GenerationRun(outputs)
    with _GenerationCall(m, desc, len(prompts) * n, max_new_tokens, -(-len(order) // per_batch)) as call:
        for first in range(0, len(order), per_batch):
            idx = order[first : first + per_batch]
            watching = observers() if observers else []
            processors = [*penalty, *strategy.processors(ctx), *watching, *warpers]
            choose = _sampler(processors, kw["do_sample"])
            rows = [prompts[i] for i in idx for _ in range(n)]  # num_return_sequences: each prompt n times in a row
            new = decode_batch(
                m,
                rows,
                tokenizer.pad_token_id,
                max_new_tokens,
                choose,
                eos,
                leave=False,
                precision=precision,
                **call.loop,
            )
            for watcher in watching:
                watcher.flush()
            for row, ids in enumerate(new):
                outputs[idx[row // n]].append(Generated(ids, tokenizer.decode(ids, skip_special_tokens=False)))
                run.tokens += len(ids)
    run.seconds = call.seconds
    run.stats = {"tokens": run.tokens, "seconds": round(run.seconds, 2), "tokens_per_s": round(run.tokens_per_s, 1)}
    return run


def _through_vllm(m, tokenizer, prompts, strategy, ctx, max_new_tokens, precision, desc, observers, eos_ids):
    from runner.decoding.vllm_generate import generate_vllm

    eos = set(eos_ids) if eos_ids is not None else eos_token_ids(m, tokenizer)
    start = time.perf_counter()
    ids = generate_vllm(m, tokenizer, prompts, strategy, ctx, max_new_tokens, eos, precision, observers)
    run = GenerationRun([[Generated(row, tokenizer.decode(row, skip_special_tokens=False)) for row in p] for p in ids])
    run.tokens, run.seconds = sum(len(row) for p in ids for row in p), time.perf_counter() - start
    run.stats = {"tokens": run.tokens, "seconds": round(run.seconds, 2), "tokens_per_s": round(run.tokens_per_s, 1)}
    engine.record(
        {"desc": desc, "rows": len(prompts) * strategy.n, "max_new_tokens": max_new_tokens, "compiled": False}
        | {
            "why": "generation.backend=vllm",
            "compile_seconds": 0.0,
            "tokens": run.tokens,
            "seconds": run.stats["seconds"],
        }
    )
    return run


def _sampler(processors: list, do_sample: bool):
    """The chooser of the next token: the processors in order, then a draw from the softmax, or the argmax."""

    def choose(sequences, logits):
        for processor in processors:
            logits = processor(sequences, logits)
        if do_sample:
            return torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1).squeeze(1)
        return logits.argmax(-1)

    return choose


class _GenerationCall:
    """One generating call: the compile decision, the token bar, and the record of what it cost."""

    def __init__(self, model, desc: str, rows: int, cap: int, batches: int):
        self.device = next(model.parameters()).device
        self.compiled, self.why = engine.plan(self.device, batches * cap)
        self.decoder = decoder_for(model, True) if self.compiled else None
        self.compile_before = self.decoder.compile_seconds if self.decoder else 0.0
        self.desc, self.rows, self.cap = desc, rows, cap
        self.bar = TokenBar(rows, cap, desc)
        self.loop = {"static": self.compiled, "compile": self.compiled, "bar": self.bar}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
        self.seconds = self.bar.seconds
        if exc[0] is None:
            compile_s = self.decoder.compile_seconds - self.compile_before if self.decoder else 0.0
            engine.record(
                {
                    "desc": self.desc,
                    "rows": self.rows,
                    "max_new_tokens": self.cap,
                    "compiled": self.compiled,
                    "why": self.why,
                    "compile_seconds": round(compile_s, 2),
                    "tokens": self.bar.tokens,
                    "seconds": round(self.seconds, 2),
                }
            )
        return False


def greedy_generate(model, tokenizer, prompts: list[list[int]], *settings, strip: bool = True) -> list[str]:
    """Greedy continuation of each prompt up to the tokenizer's EOS, decoded without special tokens (the
    unlearning benchmarks' answers: TOFU, MUSE, the GSM8K attack).

    ``settings``: ``max_new_tokens, batch_size, precision, desc``, as :func:`greedy_ids` takes them.
    ``strip=False`` keeps surrounding whitespace, for callers that cut the text at stop strings first.
    The tokens are those of ``model.generate`` (greedy, the same left-padded batches); see
    ``greedy_ids`` for how finished rows stop costing anything.
    """
    ids = greedy_ids(model, tokenizer, prompts, *settings)
    texts = [tokenizer.decode(row, skip_special_tokens=True) for row in ids]
    return [t.strip() for t in texts] if strip else texts


def greedy_run(model, tokenizer, prompts: list[list[int]], *settings, **options) -> GenerationRun:
    """:func:`generate` with greedy decoding: one continuation of each prompt, ended by any of the model's end
    tokens (``greedy_ids`` stops at the tokenizer's EOS alone). ``settings``: ``max_new_tokens, batch_size,
    precision``; ``options``: generate's keywords (``desc``, ``repetition_penalty``)."""
    return generate(
        model, tokenizer, prompts, Decoding(name="greedy"), DecodingContext(tokenizer), *settings, **options
    )


@torch.inference_mode()
def greedy_ids(
    model,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
    precision: str,
    desc: str,
    vllm_ok: bool = False,
) -> list[list[int]]:
    """Greedy tokens of each prompt up to (not including) the tokenizer's EOS, at most ``max_new_tokens``.

    Length-sorted, left-padded batches like ``model.generate``'s, except that a finished row leaves the
    batch (see :mod:`runner.decoding.loop`): ``generate`` keeps computing every finished row until the
    batch's longest answer is done, so short answers pay for long ones. ``vllm_ok``: as in :func:`generate`.
    """
    m = unwrap(model)
    if vllm_ok and engine.settings().backend == "vllm":
        greedy = Decoding(name="greedy")
        run = _through_vllm(
            m,
            tokenizer,
            prompts,
            greedy,
            DecodingContext(tokenizer),
            max_new_tokens,
            precision,
            desc,
            None,
            {tokenizer.eos_token_id},
        )
        return [p[0].ids for p in run.outputs]
    eos = {tokenizer.eos_token_id}
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[list[int]] = [[] for _ in prompts]
    with _GenerationCall(m, desc, len(prompts), max_new_tokens, -(-len(order) // batch_size)) as call:
        for first in range(0, len(order), batch_size):
            idx = order[first : first + batch_size]
            rows = [prompts[i] for i in idx]
            new = decode_batch(
                m,
                rows,
                tokenizer.pad_token_id,
                max_new_tokens,
                argmax,
                eos,
                leave=True,
                precision=precision,
                **call.loop,
            )
            for i, ids in zip(idx, new, strict=True):
                outputs[i] = ids
    return outputs
