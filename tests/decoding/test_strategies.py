"""Decoding strategies (runner/decoding/strategies.py): every option builds with the papers' defaults;
bad options name their key."""

from __future__ import annotations

import pytest

from runner.decoding.base import DecodingContext
from runner.decoding.strategies import (
    BudgetForcingDecoding,
    Decoding,
    ThoughtSwitchingPenalty,
    build_decoding,
)
from runner.errors import ConfigError
from tests.conftest import compose_cfg


def test_tip_is_a_constant_penalty_in_its_first_positions():
    tip = ThoughtSwitchingPenalty(words=["x"])
    assert tip.delta == -3.0 and tip.window == (0, 600)
    assert tip.offset(0) == tip.offset(599) == -3.0


def test_every_decoding_option_builds_with_the_papers_defaults():
    built = {name: build_decoding(compose_cfg(f"decoding={name}").decoding) for name in ("greedy", "sample")}
    assert type(built["greedy"]) is Decoding and not built["greedy"].do_sample
    assert built["sample"].temperature == 0.6 and built["sample"].top_p == 0.95
    cfg = compose_cfg("decoding=cyclicreflex", "benchmark=math500", "method=none")
    cyclic = build_decoding(cfg.decoding)
    assert (cyclic.amplitude, cyclic.period, cyclic.window) == (5.0, 1200, (0, 8192))
    assert cyclic.words == ["wait", "Wait", "but", "But", "Alternatively"]
    assert build_decoding(compose_cfg("decoding=cyclicreflex", "benchmark=amc23", "method=none").decoding).period == 900
    tip = build_decoding(compose_cfg("decoding=tip").decoding)
    assert (tip.delta, tip.window) == (-3.0, (0, 600))
    s1 = build_decoding(compose_cfg("decoding=s1").decoding)
    assert isinstance(s1, BudgetForcingDecoding) and s1.insert == "Wait"


@pytest.mark.parametrize(
    "override,key",
    [
        ("decoding.n=4", "decoding.n"),  # greedy with 4 samples
        ("decoding.window=[5,2]", "decoding.window"),
        ("decoding.period=0", "decoding.period"),
    ],
)
def test_bad_options_name_their_key(override, key):
    group = "decoding=greedy" if override == "decoding.n=4" else "decoding=cyclicreflex"
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_decoding(compose_cfg(group, override).decoding)


def test_s1_needs_a_one_token_end_of_thinking_tag(smollm2):
    _, tokenizer = smollm2
    s1 = BudgetForcingDecoding(min_thinking=5, max_thinking=10)
    with pytest.raises(ConfigError, match="end-of-thinking tag"):
        s1.check(DecodingContext(tokenizer, think_end=None))
    with pytest.raises(ConfigError, match="one token"):
        s1.check(DecodingContext(tokenizer, think_end="</think>"))  # three tokens in SmolLM2
