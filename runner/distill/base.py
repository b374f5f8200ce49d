"""The contract of a condenser (``condense=`` config group): which thoughts of a chain of thought to keep.

The implementations, EPiC and its baselines, are in ``runner/distill/condense.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from runner.options import Range


def kept_count(n: int, ratio: float) -> int:
    """round(ratio * n), at least one thought of a non-empty trace and at most all of them."""
    if n == 0:
        return 0
    return min(n, max(1, round(ratio * n)))


class Condenser(ABC):
    """Which thoughts of a trace to keep.

    ``keep(n, seed) -> indices``: the positions of the kept thoughts among ``n``, ascending (the
    order of the trace is kept). ``seed`` identifies the example, so that a random choice can be
    repeated.
    """

    option_ranges = {"ratio": Range(low=0, high=1, low_open=True, example="0.5")}

    def __init__(self, ratio: float = 1.0, name: str = ""):
        self.ratio, self.name = float(ratio), name or type(self).__name__.lower()

    @abstractmethod
    def keep(self, n: int, seed: int) -> list[int]: ...
