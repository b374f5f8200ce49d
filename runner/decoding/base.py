"""The contract of a decoding strategy (``decoding=`` config group).

A strategy is chosen with ``_target_`` in ``conf/decoding/<name>.yaml`` and built
with :func:`runner.decoding.strategies.build_decoding`. It says how to sample
(``generate_kwargs``: greedy, or temperature / top_p) and which
``transformers.LogitsProcessor`` objects change the logits on the way
(``processors``, built fresh for every ``generate`` call because they keep
per-row state: the position, whether a row has closed its thinking).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class DecodingContext:
    """What a strategy needs from the model side to build its processors."""

    tokenizer: object
    think_end: str | None = None  # the model's end-of-thinking tag ("</think>"), None when it has none


@runtime_checkable
class DecodingStrategy(Protocol):
    name: str
    do_sample: bool
    n: int  # samples per problem
    seed: int

    def generate_kwargs(self) -> dict:
        """Keyword arguments for ``model.generate`` (do_sample, temperature, top_p)."""
        ...

    def processors(self, ctx: DecodingContext) -> list:
        """Fresh ``LogitsProcessor`` objects for one ``generate`` call (empty for plain decoding)."""
        ...

    def check(self, ctx: DecodingContext) -> dict:
        """Resolve words and tags against the tokenizer (a ConfigError if one does not fit); what was resolved."""
        ...
