"""The one check of a numeric setting, and the option ranges every kind of component declares.

Every comparison with NaN is false, so a check written as ``if value <= 0: raise`` lets NaN (and
often inf) through to the stage that divides by it. ``check_number`` tests the type first, then
finiteness, then the range; every numeric setting of the job goes through it: the trainer blocks
(``runner.config``) and each component's options.

A component class (a method, a benchmark, a coreset selector, a decoding strategy, an attack, a
condenser, an analysis, a diffusion attack or defence) declares its options' ranges (``Range``, or
``Choice`` for a word out of a few) as a class attribute::

    class NPO(ForgetRetainMethod):
        option_ranges = {"beta": Range(low=0, low_open=True, example="0.1"), "alpha": NON_NEGATIVE}

``check_components(cfg)`` reads those declarations for every node of the job's config that names a
class (``_target_``), before any stage; ``runner.components.build`` reads them again for a node built
later from plain options (BLUR's base method). Checks that relate two options (``max_thinking >=
min_thinking``) stay in the constructor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError

# config nodes that hold no component options (Hydra's own settings)
NOT_COMPONENTS = ("hydra",)


def _fmt(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: finite, of the right type, between ``low`` and ``high``.

    ``low_open`` / ``high_open`` exclude the bound itself (``> 0`` rather than ``>= 0``); ``whole``
    asks for an integer (1.5 is refused, not rounded); ``optional`` lets ``null`` through (the
    setting's "off" or "default"); ``example`` is a good value, for the message's fix.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    whole: bool = False
    optional: bool = False
    example: str = ""

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a finite number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"{kind} in {left}{_fmt(self.low)}, {_fmt(self.high)}{right}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {_fmt(self.low)}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {_fmt(self.high)}"
        else:
            text = kind
        return text + (" or null" if self.optional else "")

    def accepts(self, value) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False  # text, a list, a flag: never a number here
        if self.whole and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def check(self, key: str, value, fix: str = "") -> None:
        if not self.accepts(value):
            fix = fix or (f"set {key}={self.example}" if self.example else f"set {key} to {self.describe()}")
            raise ConfigError(key, f"must be {self.describe()}, got {value!r}", fix)


@dataclass(frozen=True)
class Choice:
    """An option that takes one of a few values (``forget_split: forget01|forget05|forget10``)."""

    values: tuple

    def check(self, key: str, value, fix: str = "") -> None:
        if value not in self.values:
            names = ", ".join(map(str, self.values))
            raise ConfigError(key, f"`{value}` is not one of {names}", fix or f"use one of {names}")


@dataclass(frozen=True)
class NumberOrWord:
    """A number in ``number``, or one of a few words (``max_new_tokens: auto``). A mapping (one value per
    suite, say) is left to the component, which checks each entry when it is built."""

    number: Range
    words: tuple

    def check(self, key: str, value, fix: str = "") -> None:
        if isinstance(value, Mapping) or (isinstance(value, str) and value in self.words):
            return
        words = " or ".join(self.words)
        self.number.check(key, value, fix or f"set {key}={self.number.example or words}, or {words}")


# the ranges most options take
POSITIVE = Range(low=0, low_open=True)
NON_NEGATIVE = Range(low=0)
COUNT = Range(low=1, whole=True)  # a whole number >= 1
FRACTION = Range(low=0, high=1, low_open=True)  # (0, 1]: a share that keeps something
# numpy takes seeds 0 .. 2**32 - 1, and a rank adds its index (distributed.seed_process)
SEED = Range(low=0, high=2**31 - 1, whole=True, example="0")


def check_number(key: str, value, allowed: Range, fix: str = "") -> None:
    """Refuse ``value`` for the setting ``key`` unless ``allowed`` accepts it; the message names the key and the fix."""
    allowed.check(key, value, fix)


_MISSING = object()


def _select(options: Mapping, dotted: str):
    """``options["train"]["learning_rate"]`` for ``train.learning_rate``; a sentinel where a part is missing."""
    node = options
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def declared_ranges(cls) -> dict[str, Range | Choice]:
    """The option ranges a component class declares (``option_ranges``), its parents' included."""
    merged: dict[str, Range | Choice] = {}
    for klass in reversed(getattr(cls, "__mro__", ())):
        merged.update(klass.__dict__.get("option_ranges", {}))
    return merged


def check_options(cls, options: Mapping, key: str) -> None:
    """Each option ``cls`` declares a range for, where ``options`` sets it (an absent one keeps its default)."""
    for name, allowed in declared_ranges(cls).items():
        value = _select(options, name)
        if value is not _MISSING:
            allowed.check(f"{key}.{name}", value)


def _component_class(target):
    try:
        return get_class(str(target))
    except Exception:  # a bad dotted path is reported where the component is built, with the builder's message
        return None


def check_components(cfg: DictConfig | Mapping, prefix: str = "") -> None:
    """The declared option ranges of every component the config names, nested ones included (BLUR's base).

    A node that interpolates another (a reasoning benchmark's ``decoding: ${decoding}``) is checked
    once, where the user sets it, so the message names that key.
    """
    cls = _component_class(cfg.get("_target_")) if "_target_" in cfg else None
    if cls is not None:
        check_options(cls, OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg, prefix)
    for name in list(cfg.keys()):
        if not prefix and name in NOT_COMPONENTS:
            continue
        if isinstance(cfg, DictConfig) and OmegaConf.is_interpolation(cfg, name):
            continue
        value = cfg.get(name)
        if isinstance(value, (DictConfig, Mapping)):
            check_components(value, f"{prefix}.{name}" if prefix else str(name))
