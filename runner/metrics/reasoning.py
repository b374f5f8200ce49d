"""Reasoning-benchmark metrics: answer checking (math-verify), pass@k, lengths, reflection-token statistics.

Answers are checked by math-verify (Hugging Face's maintained checker): it extracts the
final answer of a response (``\\boxed{}``, LaTeX, or a plain number, in that priority) and
tests mathematical equivalence with the gold answer, given to it as ``\\boxed{gold}``.
Only the answer part of a response is read: what follows the end-of-thinking tag when the
response has one, and what follows the last ``answer_after`` marker (GSM8K's ``####``)
when set and present.

Reflection statistics work on the positions (0-based generated-token indices) where a
reflection token was generated; a rate is reflection tokens / generated tokens over a set
of positions, pooled over responses (each position weighs by how many responses reach it).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np

from runner.decoding.processors import wave_phase

# Phase ranges of CyclicReflex's wave (see runner.decoding.processors.triangular_wave):
PEAK_QUARTER = (0.125, 0.375)  # the quarter period around +A (offset >= A/2)
NEGATIVE_HALF = (0.5, 1.0)  # where the offset is <= 0, down to -A


# ---------------------------------------------------------------- answers


def _timeouts() -> dict:
    # math-verify's timeouts use SIGALRM, which only the main thread may set
    on_main = threading.current_thread() is threading.main_thread()
    return {} if on_main else {"parsing_timeout": None}


def gold_answer(answer: str, answer_after: str | None = None) -> str:
    """The gold final answer: the answer column, or what follows its last ``answer_after`` marker (GSM8K)."""
    text = str(answer)
    if answer_after and answer_after in text:
        text = text.rsplit(answer_after, 1)[1]
    return text.strip()


def answer_part(response: str, answer_after: str | None = None) -> str:
    """The part of a response (already past the end-of-thinking tag) that holds its final answer."""
    if answer_after and answer_after in response:
        return response.rsplit(answer_after, 1)[1]
    return response


def check_answer(response: str, gold: str, answer_after: str | None = None) -> tuple[str, bool]:
    """(the extracted answer, whether it equals ``gold``) by math-verify; ``""`` when nothing was extracted."""
    from math_verify import parse, verify

    kwargs = _timeouts()
    target = parse("\\boxed{" + gold + "}", **kwargs)
    found = parse(answer_part(response, answer_after), **kwargs)
    extracted = str(found[-1]) if found else ""
    if not target or not found:
        return extracted, False
    verify_kwargs = {"timeout_seconds": None} if kwargs else {}
    return extracted, bool(verify(target, found, **verify_kwargs))


# ---------------------------------------------------------------- pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


# ---------------------------------------------------------------- thinking and reflection tokens


def find_tag(ids: Sequence[int], tag: Sequence[int] | None) -> int | None:
    """Index of the first occurrence of the token sequence ``tag`` in ``ids`` (None: absent, or no tag)."""
    if not tag:
        return None
    k = len(tag)
    tag = list(tag)
    for i in range(len(ids) - k + 1):
        if ids[i] == tag[0] and list(ids[i : i + k]) == tag:
            return i
    return None


def thinking_length(ids: Sequence[int], tag: Sequence[int] | None) -> int:
    """Tokens before the end-of-thinking tag; the whole response when it has no tag (or the model none)."""
    at = find_tag(ids, tag)
    return len(ids) if at is None else at


def reflection_positions(ids: Sequence[int], token_ids: set[int]) -> list[int]:
    """Generated positions holding a reflection token."""
    return [t for t, tok in enumerate(ids) if tok in token_ids]


def reflection_counts(ids: Sequence[int], words: dict[str, Sequence[int]]) -> dict[str, int]:
    """How many times each reflection word was generated (its forms summed: "Wait" and " Wait")."""
    owner = {tok: word for word, toks in words.items() for tok in toks}
    counts = dict.fromkeys(words, 0)
    for tok in ids:
        if tok in owner:
            counts[owner[tok]] += 1
    return counts


def _position_mask(lengths: Sequence[int], keep) -> tuple[np.ndarray, np.ndarray]:
    """Per position 0..max_len-1: how many responses reach it, and whether ``keep(position)`` holds."""
    width = max(lengths, default=0)
    reach = np.zeros(width, dtype=np.int64)
    for n in lengths:
        reach[:n] += 1
    positions = np.arange(width)
    return reach, keep(positions) if width else np.zeros(0, dtype=bool)


def reflection_rate(positions: Sequence[Sequence[int]], lengths: Sequence[int], keep=None) -> float | None:
    """Reflection tokens per generated token over the positions ``keep`` selects (all when None); None if none."""
    keep = keep or (lambda t: np.ones_like(t, dtype=bool))
    reach, mask = _position_mask(lengths, keep)
    tokens = int(reach[mask].sum())
    if tokens == 0:
        return None
    hits = sum(int(mask[p]) for pos in positions for p in pos if p < len(mask))
    return hits / tokens


def in_window(window: Sequence[int] | None):
    lo, hi = (0, math.inf) if window is None else window
    return lambda t: (t >= lo) & (t < hi)


def in_phase(period: float, shift: float, phases: tuple[float, float], window: Sequence[int] | None = None):
    """Positions whose wave phase lies in ``[phases[0], phases[1])`` (and inside ``window``)."""
    inside = in_window(window)
    return lambda t: (
        inside(t) & (wave_phase(t, period, shift) >= phases[0]) & (wave_phase(t, period, shift) < phases[1])
    )


def frequency_by_position(
    positions: Sequence[Sequence[int]], lengths: Sequence[int], bin_width: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(bin start positions, reflection frequency per bin): reflection tokens / generated tokens in each bin."""
    reach, _ = _position_mask(lengths, lambda t: t >= 0)
    hits = np.zeros_like(reach)
    for pos in positions:
        for p in pos:
            if p < len(hits):
                hits[p] += 1
    starts = np.arange(0, len(reach), bin_width)
    tok = np.add.reduceat(reach, starts) if len(reach) else np.zeros(0)
    hit = np.add.reduceat(hits, starts) if len(reach) else np.zeros(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = np.where(tok > 0, hit / np.maximum(tok, 1), np.nan)
    return starts, freq


def probability_rate(mass: Sequence[float], count: Sequence[float], keep=None) -> float | None:
    """Expected reflection rate over the positions ``keep`` selects: summed probability / rows generating."""
    mass, count = np.asarray(mass, dtype=np.float64), np.asarray(count, dtype=np.float64)
    mask = np.ones(len(mass), dtype=bool) if keep is None else keep(np.arange(len(mass)))
    rows = count[mask].sum()
    return float(mass[mask].sum() / rows) if rows > 0 else None
