"""The generation progress bar: it counts tokens, so a long batch moves instead of sitting at 0/N.

The bar's total is the token budget (rows x cap). It advances by the tokens generated and, when a
row ends early, by the budget that row no longer needs, so it reaches its total exactly when the
last row is done. The postfix shows finished rows and tokens/s over the last ``window`` seconds:
a cumulative average from time zero would hide a slowdown (another job taking the cores) for minutes.
"""

from __future__ import annotations

import time
from collections import deque

from tqdm.auto import tqdm


class TokenBar:
    def __init__(self, rows: int, cap: int, desc: str, window: float = 10.0):
        self.rows, self.cap, self.window = rows, cap, window
        self.bar = tqdm(total=rows * cap, desc=desc, unit="tok", leave=False, dynamic_ncols=True)
        self.finished = 0
        self.tokens = 0  # generated, EOS excluded
        self.start = time.perf_counter()
        self.recent: deque[tuple[float, int]] = deque([(self.start, 0)])
        self.shown = 0.0

    def rate(self, now: float | None = None) -> float:
        """Tokens/s since the last count at least ``window`` seconds old (the run's start while it is younger)."""
        now = time.perf_counter() if now is None else now
        while len(self.recent) > 1 and now - self.recent[1][0] >= self.window:
            self.recent.popleft()
        t0, n0 = self.recent[0]
        return (self.tokens - n0) / max(now - t0, 1e-9)

    def step(self, tokens: int, ended: int = 0, unused: int = 0) -> None:
        """``tokens`` generated this step; ``ended`` rows finished, leaving ``unused`` tokens of their budget."""
        self.tokens += tokens
        self.finished += ended
        self.bar.update(tokens + unused)
        now = time.perf_counter()
        self.recent.append((now, self.tokens))
        if now - self.shown >= 0.5:  # tqdm's own refresh limit; formatting every step costs on a small model
            self.shown = now
            self.bar.set_postfix_str(f"{self.finished}/{self.rows} rows, {self.rate():.1f} tok/s", refresh=False)

    def close(self) -> None:
        self.bar.set_postfix_str(f"{self.finished}/{self.rows} rows, {self.rate():.1f} tok/s", refresh=False)
        self.bar.close()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
