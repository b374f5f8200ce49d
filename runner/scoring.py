"""Forward passes shared by the losses and the evaluation: answer-token NLL and greedy answers.

``token_nll`` applies the LM head only at positions whose next token is an
answer token: prompt and padding positions never pay for the vocabulary
projection (a quarter of a 135M model's forward cost). Where many positions are
scored at once (text windows, where every token is), ``head_nll`` runs the head
in chunks, so the (positions x vocabulary) logits never exist all at once.
"""

from __future__ import annotations

import contextlib
import inspect

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from runner.data.qa import IGNORE, left_padded, pad_sequences
from runner.packing import last_hidden_state

# positions per LM-head chunk: a 49k vocabulary makes 1024 positions' fp32 logits 200 MB (QA batches
# score fewer answer tokens than this and run in one piece)
HEAD_CHUNK = 1024


def _nll(head, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="none")


def head_nll(head, hidden: torch.Tensor, targets: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """-log softmax(head(hidden))[targets] for (N, H) hidden states, as an (N,) tensor.

    Above ``chunk`` positions the projection, log-softmax and loss run chunk by chunk; under
    autograd each chunk is checkpointed (its logits are recomputed in backward rather than kept),
    so the memory of the logits and their gradient is one chunk's, for one extra head forward.
    ``chunk``: positions per chunk (default ``HEAD_CHUNK``).
    """
    chunk = chunk or HEAD_CHUNK
    if hidden.shape[0] <= chunk:
        return _nll(head, hidden, targets)
    track = torch.is_grad_enabled() and (hidden.requires_grad or any(p.requires_grad for p in head.parameters()))
    parts = []
    for start in range(0, hidden.shape[0], chunk):
        h, t = hidden[start : start + chunk], targets[start : start + chunk]
        parts.append(checkpoint(_nll, head, h, t, use_reentrant=False) if track else _nll(head, h, t))
    return torch.cat(parts)


def _stats(head, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(head(hidden).float(), dim=-1)
    token = logp.gather(1, targets[:, None])[:, 0]
    hit = (logp.argmax(dim=-1) == targets).float()
    p = logp.exp()
    mean = (p * logp).sum(dim=-1)
    var = (p * logp.square()).sum(dim=-1) - mean.square()
    return torch.stack([token, hit, mean, var], dim=1)


def head_token_stats(head, hidden: torch.Tensor, targets: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Per position: log p(target), [argmax == target], and the mean and variance of log p under p
    over the vocabulary, as an (N, 4) float32 tensor (no gradient).

    The membership and memorisation metrics' inputs from the head forward the NLL needs anyway;
    the (positions x vocabulary) log-probs exist one chunk at a time, like ``head_nll``'s.
    """
    chunk = chunk or HEAD_CHUNK
    return torch.cat(
        [_stats(head, hidden[s : s + chunk], targets[s : s + chunk]) for s in range(0, len(targets), chunk)]
    )


STAT_NAMES = ("logprob", "hit", "vocab_mean", "vocab_var")


def _as_arrays(stats: torch.Tensor) -> dict[str, np.ndarray]:
    cols = stats.double().cpu().numpy()
    return {name: cols[:, j] for j, name in enumerate(STAT_NAMES)}


def unwrap(model):
    """The bare transformers model under a DeepSpeed / DDP wrapper."""
    return getattr(model, "module", model)


def token_nll(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token NLL of the labels (B, T-1) and the mask of scored tokens."""
    m = unwrap(model)
    hidden = last_hidden_state(m.base_model, batch["input_ids"], batch["attention_mask"])
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE
    nll_flat = head_nll(m.get_output_embeddings(), hidden[:, :-1][mask], targets[mask])
    nll = torch.zeros(targets.shape, dtype=nll_flat.dtype, device=nll_flat.device).masked_scatter(mask, nll_flat)
    return nll, mask


def sequence_logprob(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(y|x) summed over answer tokens, and the answer lengths |y|."""
    nll, mask = token_nll(model, batch)
    return -nll.sum(dim=1), mask.sum(dim=1)


def mean_nll(model, batch: dict) -> torch.Tensor:
    """The usual fine-tuning loss: NLL averaged over every answer token in the batch."""
    nll, mask = token_nll(model, batch)
    return nll.sum() / mask.sum().clamp(min=1)


def autocast(precision: str, device: torch.device):
    """bfloat16 autocast for ``bf16``, nothing for ``fp32`` (``auto`` must be resolved first: runner.precision)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"precision {precision!r} reached a compute stage unresolved; use runner.precision.resolve")
    return contextlib.nullcontext()


def _nll_batches(model, encoded: list[dict], pad_id: int, batch_size: int, precision: str, desc: str):
    """(positions in ``encoded``, per-token NLL, label mask) per batch, batched in length order so padding stays small."""
    m = unwrap(model)
    device = next(m.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        idx = order[start : start + batch_size]
        seqs = [encoded[i] for i in idx]
        batch = {
            "input_ids": pad_sequences([s["input_ids"] for s in seqs], pad_id).to(device),
            "attention_mask": pad_sequences([[1] * len(s["input_ids"]) for s in seqs], 0).to(device),
            "labels": pad_sequences([s["labels"] for s in seqs], IGNORE).to(device),
        }
        with autocast(precision, device):
            nll, mask = token_nll(m, batch)
        yield idx, nll, mask


@torch.inference_mode()
def score_sequences(model, encoded: list[dict], pad_id: int, batch_size: int, precision: str, desc: str) -> np.ndarray:
    """Sum of answer NLL and answer length for each encoded sequence, as an (N, 2) array."""
    out = np.zeros((len(encoded), 2), dtype=np.float64)
    for idx, nll, mask in _nll_batches(model, encoded, pad_id, batch_size, precision, desc):
        out[idx, 0] = nll.sum(dim=1).double().cpu().numpy()
        out[idx, 1] = mask.sum(dim=1).cpu().numpy()
    return out


@torch.inference_mode()
def token_logprobs(model, encoded: list[dict], pad_id: int, batch_size: int, precision: str, desc: str) -> list:
    """log P(token | prefix) of every labelled token of each sequence, one float64 array per sequence."""
    out: list = [None] * len(encoded)
    for idx, nll, mask in _nll_batches(model, encoded, pad_id, batch_size, precision, desc):
        for row, i in enumerate(idx):
            out[i] = (-nll[row][mask[row]]).double().cpu().numpy()
    return out


@torch.inference_mode()
def sequence_token_stats(model, encoded: list[dict], pad_id: int, batch_size: int, precision: str, desc: str) -> list:
    """``head_token_stats`` of every labelled token of each sequence, as arrays named by ``STAT_NAMES``."""
    m = unwrap(model)
    device = next(m.parameters()).device
    out: list = [None] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        idx = order[start : start + batch_size]
        seqs = [encoded[i] for i in idx]
        ids = pad_sequences([s["input_ids"] for s in seqs], pad_id).to(device)
        attn = pad_sequences([[1] * len(s["input_ids"]) for s in seqs], 0).to(device)
        targets = pad_sequences([s["labels"] for s in seqs], IGNORE).to(device)[:, 1:]
        with autocast(precision, device):
            hidden = last_hidden_state(m.base_model, ids, attn)
        mask = targets != IGNORE
        stats = head_token_stats(m.get_output_embeddings(), hidden[:, :-1][mask], targets[mask])
        ends = mask.sum(dim=1).cumsum(0).tolist()
        for row, i in enumerate(idx):
            out[i] = _as_arrays(stats[(ends[row - 1] if row else 0) : ends[row]])
    return out


def cache_kwarg(model) -> str:
    """The forward argument that takes a KV cache: ``cache`` in recent transformers, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(type(model.base_model).forward).parameters else "past_key_values"


@torch.inference_mode()
def score_answer_sets(
    model,
    prompts: list[list[int]],
    answers: list[list[list[int]]],
    pad_id: int,
    batch_size: int,
    precision: str,
    desc: str,
    gold_stats: bool = False,
):
    """(sum of NLL, token count) of every answer of every prompt; one (n_answers, 2) array per prompt.

    With ``gold_stats``, also each prompt's first answer's per-token statistics (``head_token_stats``
    as arrays named by ``STAT_NAMES``), from the same forward: returns ``(sums, stats)``.

    Equal to ``score_sequences`` on each prompt+answer sequence, but a prompt shared by several
    answers (TOFU scores the gold, paraphrased and five perturbed answers of each question) runs
    once: its keys and values are cached and every answer continues from them. Questions are
    taken in order of their longest answer (answers are most of the tokens, so this keeps their
    padding small), as many per pass as keep the answers within ``batch_size`` rows.
    """
    m = unwrap(model)
    device = next(m.parameters()).device
    out = [np.zeros((len(a), 2), dtype=np.float64) for a in answers]
    gold: list = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: (max(map(len, answers[i]), default=0), len(prompts[i])))
    groups, group, rows = [], [], 0
    for i in order:
        if group and rows + len(answers[i]) > batch_size:
            groups.append(group)
            group, rows = [], 0
        group.append(i)
        rows += len(answers[i])
    groups += [group] if group else []
    for group in tqdm(groups, desc=desc, unit="batch", leave=False):
        # prompts, left-padded so every prompt ends at the last cached position
        prompt_ids, prompt_mask = left_padded([prompts[i] for i in group], pad_id, device)
        with autocast(precision, device):
            first = m.base_model(
                input_ids=prompt_ids,
                attention_mask=prompt_mask,
                position_ids=(prompt_mask.cumsum(-1) - 1).clamp(min=0),
                use_cache=True,
            )
        owner = torch.tensor([g for g, i in enumerate(group) for _ in answers[i]], device=device)
        cache = first.cache if hasattr(first, "cache") else first.past_key_values  # renamed in transformers 5.x
        cache.reorder_cache(owner)  # one copy of its prompt's keys and values per answer
        seqs = [a for i in group for a in answers[i]]
        answer_ids = pad_sequences(seqs, pad_id).to(device)
        answer_mask = pad_sequences([[1] * len(a) for a in seqs], 0).to(device)
        with autocast(precision, device):
            hidden = m.base_model(
                input_ids=answer_ids,
                attention_mask=torch.cat([prompt_mask[owner], answer_mask], dim=1),
                position_ids=prompt_mask.sum(-1)[owner, None] + torch.arange(answer_ids.shape[1], device=device),
                use_cache=False,
                **{cache_kwarg(m): cache},
            ).last_hidden_state
        # answer token j is predicted at the position before it: the prompt's last one for j = 0
        before = torch.cat([first.last_hidden_state[owner, -1:], hidden[:, :-1]], dim=1)
        mask = answer_mask.bool()
        head = m.get_output_embeddings()
        if gold_stats:
            # the first answer of each prompt (the gold one) through the statistics head, the others as before
            first = torch.zeros(len(seqs), dtype=torch.bool, device=device)
            first[[sum(len(answers[j]) for j in group[:g]) for g in range(len(group))]] = True
            gold_mask = mask & first[:, None]
            stats = head_token_stats(head, before[gold_mask], answer_ids[gold_mask])
            nll = torch.zeros(mask.shape, dtype=torch.float32, device=device)
            nll[gold_mask] = -stats[:, 0]
            rest = mask & ~gold_mask
            nll[rest] = head_nll(head, before[rest], answer_ids[rest]).float()
            nll = nll[mask]
            ends = gold_mask.sum(dim=1)[first].cumsum(0).tolist()
            for g, i in enumerate(group):
                gold[i] = _as_arrays(stats[(ends[g - 1] if g else 0) : ends[g]])
        else:
            nll = head_nll(head, before[mask], answer_ids[mask])
        per_row = torch.zeros(mask.shape, dtype=nll.dtype, device=device).masked_scatter(mask, nll).sum(dim=1)
        scored = torch.stack([per_row.double(), mask.sum(dim=1).double()], dim=1).cpu().numpy()
        start = 0
        for i in group:
            out[i] = scored[start : start + len(answers[i])]
            start += len(answers[i])
    return (out, gold) if gold_stats else out
