"""The selector contract: what a forget-set coreset selector is given, and what it must answer.

A selector picks exactly ``coreset_size(ratio, N)`` distinct example ids from the full forget
set of N rows. It is a config node of ``conf/coreset`` (``_target_`` plus its options) built by
``runner.components.build`` with the job's seed added; ``coreset: null`` (``coreset=none``)
unlearns with the whole forget set and builds no selector.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np
import torch

from runner.errors import ConfigError
from runner.options import Range, check_number


def coreset_size(ratio: float, n: int) -> int:
    """ceil(ratio * n), robust to float noise (0.05 * 40 is 2.0000000000000004, which must give 2)."""
    return max(1, min(n, math.ceil(round(ratio * n, 9))))


@dataclass
class Pool:
    """What a selector may look at: the full forget set and the model before unlearning."""

    rows: list[dict]
    encoded: list[dict]  # encode(rows), same order
    model: torch.nn.Module
    pad_id: int
    batch_size: int  # sequences per forward pass of a scoring pass
    precision: str


class Selector(abc.ABC):
    """A coreset selector.

    ``name``: the option's name, recorded with the selection; ``ratio``: the fraction of the
    forget set to keep, in (0, 1]; ``seed``: the job's seed, for selectors that draw;
    ``match_steps``: unlearn with as many optimisation steps as the full-set run would take.
    """

    option_ranges = {"ratio": Range(low=0, high=1, low_open=True, example="0.05 (1.0 keeps the whole forget set)")}

    def __init__(self, name: str, ratio: float, seed: int = 0, match_steps: bool = True):
        check_number("coreset.ratio", ratio, Selector.option_ranges["ratio"])  # required: it has no default
        self.name, self.ratio, self.seed, self.match_steps = name, float(ratio), int(seed), bool(match_steps)
        self.scores: list[float] | None = None  # per-example scores of a scoring selector, for the record

    def select(self, pool: Pool) -> list[int]:
        """Exactly ``coreset_size(ratio, N)`` distinct ids into ``pool.rows``, ascending: the first of ``rank``."""
        k = coreset_size(self.ratio, len(pool.rows))
        return sorted(self.rank(pool)[:k])

    @abc.abstractmethod
    def rank(self, pool: Pool) -> list[int]:
        """Every id into ``pool.rows``, best first (the first ``k`` form the coreset).

        A scoring selector also sets ``self.scores`` (one per row, in row order) for the record.
        """

    def transform(self, rows: list[dict], ids: list[int]) -> list[dict] | None:
        """New rows to train on in place of the selected ones ``ids`` (keyword-only samples); None keeps them."""
        return None

    def describe(self) -> dict:
        """The selector's own settings and findings worth recording beside the selection (order, keywords...)."""
        return {}


def rank_by(scores: np.ndarray, descending: bool) -> list[int]:
    """Ids by score, ties broken by id, so a ranking is reproducible."""
    keys = -scores if descending else scores
    return [int(i) for i in np.lexsort((np.arange(len(scores)), keys))]


def check_choice(key: str, value, allowed: tuple[str, ...], what: str) -> None:
    """A selector option that takes one of a few words (``order: high|low``, ``mode: rich|keyword_only``)."""
    if value not in allowed:
        raise ConfigError(f"coreset.{key}", f"`{value}` is not {what}", f"use {' or '.join(allowed)}")
