"""Chain-of-thought condensation (EPiC, arXiv 2506.04205) and its baselines.

A trace is split into thoughts, and a condenser chooses which thoughts to keep, in their
original order. The final answer is always kept. EPiC keeps the head (problem understanding) and
the tail (solution convergence) and drops the middle (exploration). The baselines keep the same
number of thoughts: chosen at random, the head only, or the tail only.

The paper leaves some choices open. This module makes them as follows:

- **Thoughts.** A thought is a paragraph: text between blank lines. ``traces.splitter: line``
  splits at every line break instead (GSM8K solutions have one step per line). A regular
  expression can be given for anything else. Empty pieces are dropped. The splitter belongs to
  the trace data, because how a trace is laid out decides where its thoughts end.
- **How many to keep.** A kept ratio τ keeps k = round(τ · n) of n thoughts, at least one and
  at most n.
- **EPiC's head and tail.** They are equal in count. For odd k, the head takes the extra
  thought, because problem understanding comes first.
"""

from __future__ import annotations

import random
import re

from runner.distill.base import Condenser, kept_count
from runner.errors import ConfigError
from runner.options import SEED

SPLITTERS = {"paragraph": r"\n\s*\n", "line": r"\n"}


def split_thoughts(trace: str, splitter: str = "paragraph") -> list[str]:
    """The trace's thoughts, in order: paragraphs, lines, or the pieces between matches of a regex."""
    pattern = SPLITTERS.get(splitter, splitter)
    try:
        pieces = re.split(pattern, trace)
    except re.error as exc:
        raise ConfigError(
            "traces.splitter", f"`{splitter}` is neither paragraph, line nor a regex ({exc})", "use paragraph"
        ) from None
    return [p.strip() for p in pieces if p.strip()]


class FullTrace(Condenser):
    """``condense=none``: every thought (the ratio is ignored)."""

    def keep(self, n: int, seed: int) -> list[int]:
        return list(range(n))


class HeadAndTail(Condenser):
    """``condense=epic``: an equal-count head and tail, the middle dropped."""

    def keep(self, n: int, seed: int) -> list[int]:
        k = kept_count(n, self.ratio)
        head = (k + 1) // 2
        return list(range(head)) + list(range(n - (k - head), n))


class RandomThoughts(Condenser):
    """``condense=random``: k thoughts drawn at random for each example (seeded), in order."""

    option_ranges = {"seed": SEED}

    def __init__(self, seed: int = 0, **options):
        super().__init__(**options)
        self.seed = int(seed)

    def keep(self, n: int, seed: int) -> list[int]:
        rng = random.Random(self.seed * 1_000_003 + seed)
        return sorted(rng.sample(range(n), kept_count(n, self.ratio)))


class HeadOnly(Condenser):
    """``condense=head``: the first k thoughts."""

    def keep(self, n: int, seed: int) -> list[int]:
        return list(range(kept_count(n, self.ratio)))


class TailOnly(Condenser):
    """``condense=tail``: the last k thoughts."""

    def keep(self, n: int, seed: int) -> list[int]:
        return list(range(n - kept_count(n, self.ratio), n))
