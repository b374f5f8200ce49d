"""The contract of a condenser (``condense=`` config group): which thoughts of a chain of thought to keep.

The implementations, EPiC and its baselines, are in ``runner/distill/condense.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from runner.errors import ConfigError


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

    def __init__(self, ratio: float = 1.0, name: str = ""):
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ConfigError("condense.ratio", f"must be in (0, 1], got {ratio!r}", "e.g. condense.ratio=0.5")
        self.ratio, self.name = float(ratio), name or type(self).__name__.lower()

    @abstractmethod
    def keep(self, n: int, seed: int) -> list[int]: ...
