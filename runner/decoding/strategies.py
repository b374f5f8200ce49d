"""The strategies of the ``decoding=`` group: plain (greedy / sample), CyclicReflex, TIP, s1.

Each is built from ``conf/decoding/<name>.yaml`` by :func:`build_decoding`; its constructor
checks the options (a ConfigError names the key), and :meth:`check` the words and tags
against the tokenizer before any generation.
"""

from __future__ import annotations

import abc

from omegaconf import DictConfig

from runner.components import build
from runner.decoding.base import DecodingContext
from runner.decoding.processors import BudgetForcing, ReflectionBias, triangular_wave
from runner.decoding.tokens import tag_token_ids, word_token_ids
from runner.errors import ConfigError
from runner.options import SEED, Range

REFLECTION_WORDS = ("wait", "Wait", "but", "But", "Alternatively")  # CyclicReflex's reflection tokens


def build_decoding(cfg: DictConfig | dict) -> Decoding:
    """The strategy ``cfg`` names (``_target_`` + options), through the one component builder."""
    if cfg is None:
        raise ConfigError("decoding._target_", "is missing", "choose decoding=greedy|sample|cyclicreflex|tip|s1")
    return build(cfg, Decoding, "decoding")


class Decoding:
    """Plain decoding: greedy (``do_sample: false``) or sampling (temperature, top_p), ``n`` samples per problem."""

    option_ranges = {
        "temperature": Range(low=0, low_open=True, optional=True, example="0.6"),
        "top_p": Range(low=0, high=1, low_open=True, optional=True, example="0.95 (1.0: no cut)"),
        "n": Range(low=1, whole=True, example="1"),
        "seed": SEED,
    }

    def __init__(
        self,
        name: str = "greedy",
        do_sample: bool = False,
        temperature: float | None = None,
        top_p: float | None = None,
        n: int = 1,
        seed: int = 0,
    ):
        self.name, self.do_sample, self.seed = str(name), bool(do_sample), int(seed)
        self.temperature = None if temperature is None else float(temperature)
        self.top_p = None if top_p is None else float(top_p)
        self.n = int(n)
        if not self.do_sample and self.n > 1:
            raise ConfigError(
                "decoding.n", f"greedy decoding gives one answer per problem, not {n}", "set decoding.do_sample=true"
            )
        if self.do_sample and self.temperature is None:
            raise ConfigError("decoding.temperature", "must be set when sampling", "e.g. decoding.temperature=0.6")

    def generate_kwargs(self) -> dict:
        if not self.do_sample:
            return {"do_sample": False}
        # top_k=0: no top-k cut (a model's generation_config may carry one), as in vLLM's default
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p or 1.0, "top_k": 0}

    def processors(self, ctx: DecodingContext) -> list:
        return []

    def check(self, ctx: DecodingContext) -> dict:
        return {}


def _window(window, key: str) -> tuple[int, int]:
    ok = isinstance(window, (list, tuple)) and len(window) == 2 and all(isinstance(v, int) for v in window)
    if not ok or not 0 <= window[0] < window[1]:
        raise ConfigError(
            key, f"must be [start, end) positions with 0 <= start < end, got {window!r}", "e.g. [0, 8192]"
        )
    return int(window[0]), int(window[1])


class _ReflectionDecoding(Decoding, abc.ABC):
    """Shared by CyclicReflex and TIP: an offset on the reflection words' logits inside a window."""

    def __init__(self, words=REFLECTION_WORDS, window=(0, 8192), **kwargs):
        super().__init__(**kwargs)
        self.words = [str(w) for w in words] if not isinstance(words, str) else words
        self.window = _window(list(window), "decoding.window")
        self._ids: dict[int, dict[str, list[int]]] = {}

    @abc.abstractmethod
    def offset(self, t: int) -> float:
        """The offset added to the reflection words' logits at generated position ``t``."""

    def word_ids(self, tokenizer) -> dict[str, list[int]]:
        if id(tokenizer) not in self._ids:
            self._ids[id(tokenizer)] = word_token_ids(tokenizer, self.words, "decoding.words")
        return self._ids[id(tokenizer)]

    def check(self, ctx: DecodingContext) -> dict:
        return {"words": self.word_ids(ctx.tokenizer)}

    def processors(self, ctx: DecodingContext) -> list:
        ids = [i for group in self.word_ids(ctx.tokenizer).values() for i in group]
        end = tag_token_ids(ctx.tokenizer, ctx.think_end, "model.prompt.think_end") if ctx.think_end else None
        return [ReflectionBias(ids, self.offset, self.window, end)]


class CyclicReflex(_ReflectionDecoding):
    """CyclicReflex (arXiv 2506.11077): a triangular wave of amplitude A and period C on the reflection logits."""

    option_ranges = {
        "amplitude": Range(example="5.0"),
        "period": Range(low=0, low_open=True, example="1200 (900 for AMC23)"),
        "shift": Range(example="0.0"),
    }

    def __init__(self, amplitude: float = 5.0, period: float = 1200, shift: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.amplitude, self.period, self.shift = float(amplitude), float(period), float(shift)

    def offset(self, t: int) -> float:
        return triangular_wave(t, amplitude=self.amplitude, period=self.period, shift=self.shift)


class ThoughtSwitchingPenalty(_ReflectionDecoding):
    """TIP: a constant offset ``delta`` (a penalty when negative) on the reflection logits inside the window."""

    option_ranges = {"delta": Range(example="-3.0")}

    def __init__(self, delta: float = -3.0, window=(0, 600), **kwargs):
        super().__init__(window=window, **kwargs)
        self.delta = float(delta)

    def offset(self, t: int) -> float:
        return self.delta


class BudgetForcingDecoding(Decoding):
    """s1 budget forcing: thinking of at least ``min_thinking`` tokens (by inserting ``insert`` up to
    ``max_waits`` times where the model would stop) and at most ``max_thinking`` (then the tag is forced)."""

    option_ranges = {
        "min_thinking": Range(low=0, whole=True, example="1000"),
        "max_thinking": Range(low=1, whole=True, optional=True, example="7000 (null: no maximum)"),
        "max_waits": Range(low=0, whole=True, example="2"),
    }

    def __init__(
        self,
        min_thinking: int = 0,
        max_thinking: int | None = None,
        max_waits: int = 1,
        insert: str = "Wait",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.min_thinking, self.max_waits, self.insert = int(min_thinking), int(max_waits), str(insert)
        self._calls = 0  # each generate call draws its own stream of "would it stop here" decisions
        self.max_thinking = None if max_thinking is None else int(max_thinking)
        if self.max_thinking is not None and self.max_thinking < max(self.min_thinking, 1):
            raise ConfigError(
                "decoding.max_thinking",
                f"{max_thinking} is below min_thinking ({min_thinking}) or not positive",
                "set max_thinking >= min_thinking, or null for no maximum",
            )

    def _ids(self, ctx: DecodingContext) -> tuple[int, list[int]]:
        if not ctx.think_end:
            raise ConfigError(
                "decoding",
                "s1 budget forcing needs a model with an end-of-thinking tag (model.prompt.think_end is not set)",
                "use a reasoning model (e.g. model=deepseek-r1-distill-qwen-1.5b) or another decoding",
            )
        end = tag_token_ids(ctx.tokenizer, ctx.think_end, "model.prompt.think_end")
        if len(end) != 1:
            raise ConfigError(
                "model.prompt.think_end",
                f"s1 suppresses and forces the end-of-thinking tag as one token; `{ctx.think_end}` is {len(end)}",
                "use a model whose tokenizer holds the tag as one (special) token",
            )
        insert = ctx.tokenizer.encode(self.insert, add_special_tokens=False)
        if not insert:
            raise ConfigError("decoding.insert", f"`{self.insert}` encodes to no tokens", "e.g. decoding.insert=Wait")
        return end[0], insert

    def check(self, ctx: DecodingContext) -> dict:
        end, insert = self._ids(ctx)
        return {"think_end_id": end, "insert_ids": insert}

    def processors(self, ctx: DecodingContext) -> list:
        end, insert = self._ids(ctx)
        self._calls += 1
        return [
            BudgetForcing(
                end,
                insert,
                self.min_thinking,
                self.max_thinking,
                self.max_waits,
                self.do_sample,
                self.temperature,
                self.top_p,
                self.seed * 1_000_003 + self._calls,
            )
        ]
