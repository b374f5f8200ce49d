"""One left-padded batch decoded token by token: the loop every generating job runs in.

Two caches, one loop:

- ``static`` (``generation.compile`` chose to compile): a pre-allocated cache and the compiled
  one-token step of :mod:`runner.decoding.static_step`; the prompt's pass stays eager.
- ``dynamic`` (eager): transformers' growing cache, as ``model.generate`` uses.

How finished rows leave (``leave``):

- ``leave=False`` (strategies with logits processors, sampling): every row stays until the batch is
  done and a finished row is fed padding, exactly as ``model.generate`` does. The processors keep
  per-row state, and the sampler draws one row of random numbers per row per step, so the same seed
  gives ``model.generate``'s samples.
- ``leave=True`` (greedy, no processors): a finished row stops costing compute. With the dynamic
  cache it leaves the step it ends; with the static cache at the batch-size boundaries of
  :func:`runner.decoding.static_step.batch_buckets` (each size is one compiled step, so compacting
  every step would compile up to ``batch`` steps; at powers of two a finished row costs at most as
  much as one still going, and there are at most log2(batch) + 1 compiles).

The only host synchronisation per step is the end-of-sequence check (the chosen tokens' copy).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from runner.data.qa import left_padded
from runner.decoding.progress import TokenBar
from runner.decoding.static_step import batch_buckets, cache_length, decoder_for
from runner.scoring import autocast, cache_kwarg

Choose = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (sequences so far, float logits) -> tokens


def argmax(sequences: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(-1)


def decode_batch(
    model,
    rows: list[list[int]],
    pad_id: int,
    max_new_tokens: int,
    choose: Choose,
    eos: set[int],
    *,
    static: bool,
    compile: bool,
    leave: bool,
    bar: TokenBar,
    precision: str,
) -> list[list[int]]:
    """Each row's new tokens up to (not including) its first end-of-sequence token, at most ``max_new_tokens``."""
    device = next(model.parameters()).device
    input_ids, mask = left_padded(rows, pad_id, device)
    batch, prompt_len = input_ids.shape
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    eos_ids = torch.tensor(sorted(eos), dtype=torch.long, device=device)
    outputs: list[list[int]] = [[] for _ in rows]
    where = list(range(batch))  # batch row -> index in ``rows``
    done = [False] * batch  # per batch row: it has ended (static caches keep it until the next boundary)
    if static:
        decoder = decoder_for(model, compile)
        length = cache_length(prompt_len, max_new_tokens)
        sizes = batch_buckets(batch)[1:] if leave else []
        cache = decoder.cache(batch, length)
        attention = mask.new_zeros(batch, length)
        attention[:, :prompt_len] = mask
        with autocast(precision, device):
            logits = decoder.prefill(input_ids, attention, position, cache)
    else:
        key = cache_kwarg(model)
        with autocast(precision, device):
            out = model(
                input_ids=input_ids, attention_mask=mask, position_ids=position, use_cache=True, logits_to_keep=1
            )
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        attention, logits = mask, out.logits[:, -1].float()
    position, sequences = position[:, -1:], input_ids
    for step in range(max_new_tokens):
        chosen = choose(sequences, logits)
        if not leave and any(done):  # a finished row is fed padding, as model.generate does
            chosen = torch.where(torch.tensor(done, device=device), torch.full_like(chosen, pad_id), chosen)
        # the step's one host synchronisation: the tokens and which of them end their row, in one copy
        tokens, ended = torch.stack([chosen, torch.isin(chosen, eos_ids).long()]).tolist()
        new_tokens = finished_now = 0
        for r, (token, end) in enumerate(zip(tokens, ended, strict=True)):
            if done[r]:
                continue
            if end:
                done[r], finished_now = True, finished_now + 1
            else:
                outputs[where[r]].append(token)
                new_tokens += 1
        unused = (max_new_tokens - step) * finished_now  # the EOS step is no token
        bar.step(new_tokens, finished_now, unused)
        if all(done):
            break
        if step == max_new_tokens - 1:
            bar.step(0, len(done) - sum(done))  # rows cut at the cap are finished too
            break
        sequences = torch.cat([sequences, chosen[:, None]], dim=1)
        alive = len(done) - sum(done)
        if leave and ((not static and finished_now) or (static and sizes and alive <= sizes[0])):
            while static and len(sizes) > 1 and alive <= sizes[1]:
                sizes.pop(0)
            keep_rows = [r for r in range(len(done)) if not done[r]]
            if static:  # pad up to the bucket with ended rows: the compiled step's batch size
                pad_rows = [r for r in range(len(done)) if done[r]][: sizes[0] - alive]
                keep_rows = sorted(keep_rows + pad_rows)
                sizes.pop(0)
            keep = torch.tensor(keep_rows, dtype=torch.long, device=device)
            if static:
                cache = decoder.compact(cache, keep, length)
            else:
                cache.reorder_cache(keep)  # index-selects the batch dimension: the ended rows' keys go
            chosen, attention, position, sequences = chosen[keep], attention[keep], position[keep], sequences[keep]
            where, done = [where[r] for r in keep_rows], [done[r] for r in keep_rows]
        position = position + 1
        with autocast(precision, device):
            if static:
                attention[:, prompt_len + step] = 1
                logits = decoder.step(chosen[:, None], attention, position, cache)
            else:
                attention = torch.cat([attention, attention.new_ones(len(done), 1)], dim=1)
                out = model(
                    input_ids=chosen[:, None],
                    attention_mask=attention,
                    position_ids=position,
                    use_cache=True,
                    **{key: cache},
                )
                logits = out.logits[:, -1].float()
    return outputs
