"""Batched, KV-cached generation under a decoding strategy, with problems/s and tokens/s on the progress bar.

Prompts are sorted by length and cut into batches of ``batch_size`` sequences (a
problem with ``n`` samples takes ``n`` of them), left-padded, and handed to
``model.generate`` with the strategy's sampling settings and a fresh set of its
logits processors. Each generation is cut at its first end-of-sequence token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from runner.data.qa import left_padded
from runner.decoding.base import DecodingContext
from runner.scoring import autocast, cache_kwarg, unwrap


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


class _Throughput(LogitsProcessor):
    """Estimates tokens generated so far (rows still going x steps, the row count read once a second, so the
    device is not synchronised every step) and shows the run's tokens/s on the progress bar."""

    def __init__(self, bar, eos_ids: set[int], start: float, done_tokens: int):
        self.bar, self.start, self.done_tokens = bar, start, done_tokens
        self.eos = torch.tensor(sorted(eos_ids), dtype=torch.long)
        self.finished: torch.Tensor | None = None
        self.prompt_len: int | None = None
        self.alive, self.tokens, self.last_shown = 0, 0, 0.0

    def __call__(self, input_ids, scores):
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
            self.finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            self.alive = input_ids.shape[0]
        else:
            self.finished |= torch.isin(input_ids[:, -1], self.eos.to(input_ids.device))
        now = time.perf_counter()
        if now - self.last_shown > 1.0:
            self.alive, self.last_shown = int((~self.finished).sum()), now
            self.bar.set_postfix_str(f"{(self.done_tokens + self.tokens) / max(now - self.start, 1e-9):.1f} tok/s")
        self.tokens += self.alive
        return scores


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
    **generate_kwargs,
) -> GenerationRun:
    """``strategy.n`` continuations of each prompt (token-id lists), in prompt order.

    ``observers``: a function returning fresh processors that watch each batch after the
    strategy's (e.g. :class:`runner.decoding.processors.TokenProbability`); their ``flush()``
    runs when the batch is done. ``eos_ids``: the tokens that end a row (default: the tokenizer's and the
    model's generation_config's).
    """
    m = unwrap(model)
    device = next(m.parameters()).device
    n = strategy.n
    per_batch = max(1, batch_size // n)  # problems per batch: batch_size counts sequences
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    eos = set(eos_ids) if eos_ids is not None else eos_token_ids(m, tokenizer)
    pad_id = tokenizer.pad_token_id
    outputs: list[list[Generated]] = [[] for _ in prompts]
    if strategy.do_sample:
        torch.manual_seed(strategy.seed)
    run = GenerationRun(outputs)
    start = time.perf_counter()
    bar = tqdm(total=len(prompts), desc=desc, unit="problem", leave=False)
    for first in range(0, len(order), per_batch):
        idx = order[first : first + per_batch]
        input_ids, attention = left_padded([prompts[i] for i in idx], pad_id, device)
        progress = _Throughput(bar, eos, start, run.tokens)
        watching = observers() if observers else []
        with autocast(precision, device):
            out = m.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max_new_tokens,
                num_return_sequences=n,
                pad_token_id=pad_id,
                eos_token_id=sorted(eos),
                logits_processor=LogitsProcessorList([*strategy.processors(ctx), *watching, progress]),
                **strategy.generate_kwargs(),
                **generate_kwargs,
            )
        for watcher in watching:
            watcher.flush()
        new = out[:, input_ids.shape[1] :].tolist()
        for row, tokens in enumerate(new):
            cut = next((k for k, tok in enumerate(tokens) if tok in eos), len(tokens))
            ids = tokens[:cut]
            outputs[idx[row // n]].append(Generated(ids, tokenizer.decode(ids, skip_special_tokens=False)))
            run.tokens += len(ids)
        bar.update(len(idx))
        run.seconds = time.perf_counter() - start
        bar.set_postfix_str(f"{run.tokens_per_s:.1f} tok/s")
    bar.close()
    run.seconds = time.perf_counter() - start
    run.stats = {"tokens": run.tokens, "seconds": round(run.seconds, 2), "tokens_per_s": round(run.tokens_per_s, 1)}
    return run


def greedy_generate(
    model,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
    precision: str,
    desc: str,
    strip: bool = True,
) -> list[str]:
    """Greedy continuation of each prompt up to the tokenizer's EOS, decoded without special tokens (the
    unlearning benchmarks' answers: TOFU, MUSE, the GSM8K attack).

    ``strip=False`` keeps surrounding whitespace, for callers that cut the text at stop strings first.
    The tokens are those of ``model.generate`` (greedy, the same left-padded batches); see
    ``greedy_ids`` for how finished rows stop costing anything.
    """
    ids = greedy_ids(model, tokenizer, prompts, max_new_tokens, batch_size, precision, desc)
    texts = [tokenizer.decode(row, skip_special_tokens=True) for row in ids]
    return [t.strip() for t in texts] if strip else texts


@torch.inference_mode()
def greedy_ids(
    model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int, precision: str, desc: str
) -> list[list[int]]:
    """Greedy tokens of each prompt up to (not including) the tokenizer's EOS, at most ``max_new_tokens``.

    A KV-cached loop over length-sorted, left-padded batches, like ``model.generate``'s, except that a
    row leaves the batch (its cache rows too) the step it ends: ``generate`` keeps computing every
    finished row until the batch's longest answer is done, so short answers pay for long ones.
    """
    m = unwrap(model)
    device = next(m.parameters()).device
    eos, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[list[int]] = [[] for _ in prompts]
    cache_key = cache_kwarg(m)
    bar = tqdm(total=len(prompts), desc=desc, unit="answer", leave=False)
    start, tokens = time.perf_counter(), 0
    for first in range(0, len(order), batch_size):
        alive = order[first : first + batch_size]  # prompt indices of the rows still generating
        input_ids, mask = left_padded([prompts[i] for i in alive], pad_id, device)
        position = (mask.cumsum(-1) - 1).clamp(min=0)
        with autocast(precision, device):
            out = m(input_ids=input_ids, attention_mask=mask, position_ids=position, use_cache=True, logits_to_keep=1)
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        position = position[:, -1:]
        for step in range(max_new_tokens):
            chosen = out.logits[:, -1].argmax(-1)
            ended = chosen == eos
            for row, token in zip(alive, chosen.tolist(), strict=True):
                if token != eos:
                    outputs[row].append(token)
                    tokens += 1
            if bool(ended.any()):
                keep = (~ended).nonzero().squeeze(1)
                bar.update(len(alive) - len(keep))
                alive = [alive[k] for k in keep.tolist()]
                if not alive:
                    break
                cache.reorder_cache(keep)  # index-selects the batch dimension: the ended rows' keys go
                chosen, mask, position = chosen[keep], mask[keep], position[keep]
            if step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=1)
            position = position + 1
            with autocast(precision, device):
                out = m(
                    input_ids=chosen[:, None],
                    attention_mask=mask,
                    position_ids=position,
                    use_cache=True,
                    **{cache_key: cache},
                )
        bar.update(len(alive) if alive else 0)
        bar.set_postfix_str(f"{tokens / max(time.perf_counter() - start, 1e-9):.1f} tok/s")
    bar.close()
    return outputs
