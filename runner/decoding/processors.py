"""Logits processors of the decoding strategies, each per row of a batch.

The generated position ``t`` counts the tokens a row has generated so far (0 when
the first new token is chosen). Every row of a left-padded batch shares ``t``; what
differs per row is when it ends, and when it closes its thinking: once a row has
generated the end-of-thinking tag, the reflection processors leave it alone.

- :class:`ReflectionBias`: adds ``offset(t)`` to the logits of the reflection
  tokens inside a window of positions. CyclicReflex (arXiv 2506.11077) uses
  :func:`triangular_wave`; TIP (the thought-switching penalty) a constant.
- :class:`BudgetForcing`: s1's budget forcing (Muennighoff et al., 2025): below
  the minimum thinking budget, an attempt to close the thinking becomes
  "Wait" instead (at most ``max_waits`` times); at the maximum the tag is forced.
- :class:`TokenProbability` changes nothing: it records, per position, the probability
  the sampler gives a set of tokens (the expected reflection frequency).

transformers applies these to the raw logits, before temperature and top-p.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import LogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper


def wave_phase(t, period: float, shift: float = 0.0):
    """p = ((t + shift * C) mod C) / C, in [0, 1): where position ``t`` lies in the cycle."""
    return ((t + shift * period) % period) / period


def triangular_wave(t, amplitude: float, period: float, shift: float = 0.0):
    """CyclicReflex's offset at position ``t``: 0 -> +A (first quarter) -> -A (middle half) -> 0.

    With p = wave_phase(t): 4Ap for p <= 0.25, A - 4A(p - 0.25) for p <= 0.75, -A + 4A(p - 0.75) otherwise.
    Works on numbers and numpy arrays alike.
    """
    import numpy as np

    p = wave_phase(np.asarray(t, dtype=np.float64), period, shift)
    a = float(amplitude)
    value = np.where(p <= 0.25, 4 * a * p, np.where(p <= 0.75, a - 4 * a * (p - 0.25), -a + 4 * a * (p - 0.75)))
    return float(value) if value.ndim == 0 else value


class _RowState(LogitsProcessor):
    """Position and per-row end-of-thinking bookkeeping shared by the processors.

    One instance serves one ``generate`` call: it is called once per step with the
    sequences so far, so the position is the growth since the first call, and a row
    has closed its thinking once its generated tokens end with the tag.
    """

    def __init__(self, think_end_ids: Sequence[int] | None):
        self.think_end = torch.tensor(list(think_end_ids), dtype=torch.long) if think_end_ids else None
        self.prompt_len: int | None = None
        self.thinking_done: torch.Tensor | None = None  # (rows,) bool

    def _advance(self, input_ids: torch.LongTensor) -> int:
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
            self.thinking_done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            if self.think_end is not None:  # on the device once, not a copy every step
                self.think_end = self.think_end.to(input_ids.device)
        t = input_ids.shape[1] - self.prompt_len
        if t < 0 or input_ids.shape[0] != self.thinking_done.shape[0]:
            raise RuntimeError("a decoding processor serves one generate call; build new ones for the next")
        if self.think_end is not None and t >= len(self.think_end):
            tag = self.think_end
            self.thinking_done |= (input_ids[:, -len(tag) :] == tag).all(dim=1)
        return t


class ReflectionBias(_RowState):
    """Adds ``offset(t)`` to the reflection tokens' logits for ``window[0] <= t < window[1]``, until the tag."""

    def __init__(
        self,
        token_ids: Sequence[int],
        offset: Callable[[int], float],
        window: tuple[int, int],
        think_end_ids: Sequence[int] | None = None,
    ):
        super().__init__(think_end_ids)
        self.token_ids = torch.tensor(sorted(set(token_ids)), dtype=torch.long)
        self.offset = offset
        self.window = (int(window[0]), int(window[1]))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        t = self._advance(input_ids)
        if not self.window[0] <= t < self.window[1]:
            return scores
        delta = float(self.offset(t))
        if delta == 0.0:
            return scores
        if self.token_ids.device != scores.device:
            self.token_ids = self.token_ids.to(scores.device)
        ids = self.token_ids
        active = (~self.thinking_done).to(scores.dtype).unsqueeze(1)  # (rows, 1): 0 once a row closed its thinking
        scores = scores.clone()
        scores[:, ids] += delta * active
        return scores


class BudgetForcing(_RowState):
    """s1 budget forcing on a model with a one-token end-of-thinking tag.

    Per row while it thinks (t = thinking tokens so far):
    - t >= ``max_thinking``: the tag is forced;
    - t < ``min_thinking`` with fewer than ``max_waits`` insertions so far: if the row
      would now close its thinking (greedy: the tag is the top token; sampling: a draw
      with the tag's probability after temperature and top-p), ``insert`` ("Wait") is
      forced in its place, token by token; otherwise the tag is suppressed, so the row
      samples among the other tokens.
    ``waits`` counts the insertions per row.
    """

    def __init__(
        self,
        think_end_id: int,
        insert_ids: Sequence[int],
        min_thinking: int,
        max_thinking: int | None,
        max_waits: int,
        do_sample: bool,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int = 0,
    ):
        super().__init__([think_end_id])
        self.end_id = int(think_end_id)
        self.insert_ids = [int(i) for i in insert_ids]
        self.min_thinking, self.max_thinking, self.max_waits = int(min_thinking), max_thinking, int(max_waits)
        self.do_sample = do_sample
        self.warpers = sampling_warpers(do_sample, temperature, top_p)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.waits: torch.Tensor | None = None  # (rows,) insertions so far
        self.queue: list[list[int]] = []  # per row: insert tokens still to force

    @staticmethod
    def _force(scores: torch.Tensor, row: int, token: int) -> None:
        """Only ``token`` is left to choose (greedy or sampled) for ``row``."""
        scores[row] = float("-inf")
        scores[row, token] = 0.0

    def _would_end(self, input_ids: torch.Tensor, rows: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """For each of ``rows``: does it close its thinking at this step, unforced?"""
        sub = scores[rows]
        if not self.do_sample:
            return sub.argmax(dim=-1) == self.end_id
        for warp in self.warpers:  # the same warpers generate applies after this processor
            sub = warp(input_ids[rows], sub)
        p_end = torch.softmax(sub.float(), dim=-1)[:, self.end_id].cpu()
        return (torch.rand(len(rows), generator=self.generator) < p_end).to(rows.device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        t = self._advance(input_ids)
        if self.waits is None:
            self.waits = torch.zeros(input_ids.shape[0], dtype=torch.long)
            self.queue = [[] for _ in range(input_ids.shape[0])]
        scores = scores.clone()
        thinking = (~self.thinking_done).cpu()
        queued = torch.tensor([bool(q) for q in self.queue])
        for row in torch.nonzero(queued & thinking).flatten().tolist():
            self._force(scores, row, self.queue[row].pop(0))
        free = thinking & ~queued
        if self.max_thinking is not None and t >= self.max_thinking:
            for row in torch.nonzero(free).flatten().tolist():
                self._force(scores, row, self.end_id)
            return scores
        if t >= self.min_thinking:
            return scores
        forcing = free & (self.waits < self.max_waits)
        rows = torch.nonzero(forcing).flatten()
        if len(rows) == 0:
            return scores
        ends = self._would_end(input_ids, rows.to(scores.device), scores).cpu()
        for row, end in zip(rows.tolist(), ends.tolist(), strict=True):
            if end:
                self.waits[row] += 1
                self.queue[row] = self.insert_ids[1:]
                self._force(scores, row, self.insert_ids[0])
            else:
                scores[row, self.end_id] = float("-inf")
        return scores


def sampling_warpers(do_sample: bool, temperature: float | None, top_p: float | None) -> list:
    """The warpers ``generate`` applies after the custom processors when sampling (temperature, then top-p)."""
    warpers = []
    if do_sample and temperature not in (None, 1.0):
        warpers.append(TemperatureLogitsWarper(float(temperature)))
    if do_sample and top_p not in (None, 1.0):
        warpers.append(TopPLogitsWarper(float(top_p)))
    return warpers


class ProbabilityByPosition:
    """Running sums over generate calls: ``mass[t]`` (probability summed over rows) and ``count[t]`` (rows)."""

    def __init__(self, positions: int):
        self.mass = torch.zeros(positions, dtype=torch.float64)
        self.count = torch.zeros(positions, dtype=torch.float64)

    def to_dict(self) -> dict:
        last = int(torch.nonzero(self.count).max()) + 1 if self.count.any() else 0
        return {"mass": self.mass[:last].tolist(), "count": self.count[:last].tolist()}


class TokenProbability(LogitsProcessor):
    """Records the probability that the next token is one of ``token_ids``, for every row still generating.

    The distribution is the one the token is drawn from: the processed logits (this processor
    comes after the strategy's) through the sampling warpers (temperature, top-p), or their
    softmax for greedy decoding. Sums stay on the device until the call ends (no per-step sync).
    """

    def __init__(self, token_ids: Sequence[int], into: ProbabilityByPosition, eos_ids, warpers: list):
        self.ids = torch.tensor(sorted(set(token_ids)), dtype=torch.long)
        self.eos = torch.tensor(sorted(eos_ids), dtype=torch.long)
        self.into, self.warpers = into, warpers
        self.prompt_len: int | None = None
        self.finished = self.mass = self.count = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
            size = len(self.into.mass)
            self.finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=scores.device)
            self.mass = torch.zeros(size, dtype=torch.float64, device=scores.device)
            self.count = torch.zeros(size, dtype=torch.float64, device=scores.device)
        t = input_ids.shape[1] - self.prompt_len
        if t > 0:
            self.finished |= torch.isin(input_ids[:, -1], self.eos.to(input_ids.device))
        if t < len(self.mass):
            warped = scores
            for warp in self.warpers:
                warped = warp(input_ids, warped)
            p = torch.softmax(warped.float(), dim=-1)[:, self.ids.to(scores.device)].sum(dim=-1)
            alive = (~self.finished).to(torch.float64)
            self.mass[t] += (p.double() * alive).sum()
            self.count[t] += alive.sum()
        return scores

    def flush(self) -> None:
        """Add this call's sums to the running ones (after generate returns)."""
        if self.mass is not None:
            self.into.mass += self.mass.cpu()
            self.into.count += self.count.cpu()
