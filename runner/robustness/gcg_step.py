"""One GCG optimisation, the model's weights only read: one copy of the model, gradients on a one-hot input.

A row is (tokens before the suffix, tokens after it, target tokens); its loss is the mean
cross-entropy of the target given everything before it. A step: the gradient of the summed
loss of the rows with respect to the one-hot suffix (one forward and backward per row), the
``top_k`` most promising tokens per position (largest negative gradient; special tokens never),
``search_width`` candidates that each change one position, their losses in batches of
``batch_size`` without gradients, and the best candidate as the next suffix. The best suffix seen
so far is what a checkpoint reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from runner.scoring import autocast, unwrap


@dataclass
class GcgRow:
    before: list[int]
    after: list[int]
    target: list[int]


@dataclass
class GcgRun:
    losses: list[float] = field(default_factory=list)  # the best loss so far, at the start and after each step
    suffix_at: dict[int, list[int]] = field(default_factory=dict)  # the best suffix at each checkpoint step
    loss_at: dict[int, float] = field(default_factory=dict)
    seconds_per_step: float = 0.0


def _ids(tokens: list[int], device) -> torch.Tensor:
    return torch.tensor(tokens, dtype=torch.long, device=device)


def candidate_losses(model, row: GcgRow, suffixes: torch.Tensor, batch_size: int, precision: str) -> torch.Tensor:
    """Mean target cross-entropy of ``row`` under each suffix (a (N, L) tensor of token ids), ``batch_size`` at a time."""
    m = unwrap(model)
    device = suffixes.device
    before, after, target = _ids(row.before, device), _ids(row.after, device), _ids(row.target, device)
    start = len(row.before) + suffixes.shape[1] + len(row.after)  # the first target position
    losses = []
    with torch.inference_mode(), autocast(precision, device):
        for first in range(0, len(suffixes), batch_size):
            chunk = suffixes[first : first + batch_size]
            n = len(chunk)
            ids = torch.cat([before.expand(n, -1), chunk, after.expand(n, -1), target.expand(n, -1)], dim=1)
            logits = m(input_ids=ids).logits[:, start - 1 : -1].float()
            nll = F.cross_entropy(logits.transpose(1, 2), target.expand(n, -1), reduction="none")
            losses.append(nll.mean(dim=1))
    return torch.cat(losses)


def suffix_gradient(model, rows: list[GcgRow], suffix: torch.Tensor, precision: str) -> torch.Tensor:
    """d(summed target loss) / d(one-hot suffix): (L, vocab), one forward and backward per row."""
    m = unwrap(model)
    embedding = m.get_input_embeddings()
    weight = embedding.weight
    one_hot = F.one_hot(suffix, weight.shape[0]).to(weight.dtype).requires_grad_(True)
    total = torch.zeros_like(one_hot)
    device = suffix.device
    for row in rows:
        before, after, target = _ids(row.before, device), _ids(row.after, device), _ids(row.target, device)
        with autocast(precision, device):
            embeds = torch.cat([embedding(before), one_hot @ weight, embedding(after), embedding(target)])
            logits = m(inputs_embeds=embeds[None]).logits[0]
        start = len(row.before) + len(suffix) + len(row.after)
        loss = F.cross_entropy(logits[start - 1 : -1].float(), target)
        (grad,) = torch.autograd.grad(loss, one_hot)
        total += grad
    return total


def sample_candidates(
    suffix: torch.Tensor, grad: torch.Tensor, top_k: int, width: int, banned: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """``width`` suffixes, each ``suffix`` with one position set to one of that position's ``top_k`` tokens."""
    scores = (-grad).clone()
    scores[:, banned] = -float("inf")
    top = scores.topk(top_k, dim=1).indices  # (L, top_k)
    length = suffix.shape[0]
    positions = torch.randint(0, length, (width,), generator=generator).to(suffix.device)
    choice = torch.randint(0, top_k, (width,), generator=generator).to(suffix.device)
    candidates = suffix.expand(width, -1).clone()
    candidates[torch.arange(width, device=suffix.device), positions] = top[positions, choice]
    return candidates


def keep_retokenisable(tokenizer, candidates: torch.Tensor) -> torch.Tensor:
    """The candidates whose text tokenises back to the same ids (a suffix a user could paste); all if none does."""
    keep = [
        i
        for i, row in enumerate(candidates.tolist())
        if tokenizer(tokenizer.decode(row), add_special_tokens=False)["input_ids"] == row
    ]
    return candidates[keep] if keep else candidates


def optimise(ctx, rows: list[GcgRow], init: list[int], attack, checkpoints: list[int]) -> GcgRun:
    """Run ``max(checkpoints)`` GCG steps on ``rows`` from the suffix ``init``; the model is left as it was."""
    model = unwrap(ctx.model)
    device = next(model.parameters()).device
    was_training = model.training
    grad_flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():  # no parameter gradient is ever needed: the backward pass ends at the one-hot input
        p.requires_grad_(False)
    try:
        vocab = model.get_input_embeddings().weight.shape[0]
        banned = torch.tensor(
            sorted({i for i in ctx.tokenizer.all_special_ids if i is not None and i < vocab}), dtype=torch.long
        )
        generator = torch.Generator().manual_seed(ctx.seed)
        suffix = _ids(init, device)

        def loss_of(candidates: torch.Tensor) -> torch.Tensor:
            return sum(candidate_losses(model, r, candidates, attack.batch_size, ctx.precision) for r in rows)

        best_suffix, best = suffix, float(loss_of(suffix[None])[0]) / len(rows)
        run = GcgRun(losses=[best])
        started = time.perf_counter()
        for step in range(1, max(checkpoints) + 1):
            grad = suffix_gradient(model, rows, suffix, ctx.precision)
            candidates = sample_candidates(suffix, grad, attack.top_k, attack.search_width, banned, generator)
            if attack.filter_ids:
                candidates = keep_retokenisable(ctx.tokenizer, candidates)
            losses = loss_of(candidates) / len(rows)
            i = int(losses.argmin())
            suffix = candidates[i]  # GCG moves to the step's best candidate even when it is worse than the best so far
            if float(losses[i]) < best:
                best_suffix, best = suffix, float(losses[i])
            run.losses.append(best)
            if step in checkpoints:
                run.suffix_at[step], run.loss_at[step] = best_suffix.tolist(), best
        run.seconds_per_step = (time.perf_counter() - started) / max(checkpoints)
        return run
    finally:
        for p, flag in zip(model.parameters(), grad_flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)
