"""Prefilling: the gold answer's first tokens are really in the prompt, and only the rest is scored."""

from __future__ import annotations

import pytest

from runner.errors import ConfigError
from runner.robustness.base import split_answer
from runner.robustness.prefill import PrefillAttack
from tests.robustness.conftest import ROWS, probe


def test_the_prompt_ends_with_the_forced_answer_tokens_and_the_rest_is_the_reference(tiny):
    ctx = probe(tiny)
    attack = PrefillAttack(tokens=[0, 3], questions=2)
    for n in (0, 3):
        prompts, rests = attack.prompts(ctx, n)
        for row, prompt, rest in zip(ROWS[:2], prompts, rests, strict=True):
            question, answer = split_answer(ctx.tokenizer, ctx.fmt, row["question"], row["answer"], 96)
            assert prompt == question + answer[:n]  # the question's tokens, then exactly n answer tokens
            assert rest == (
                row["answer"] if n == 0 else ctx.tokenizer.decode(answer[n:], skip_special_tokens=True).strip()
            )
    assert attack.prompts(ctx, 0)[1][0] == ROWS[0]["answer"]  # no prefix: the whole answer is the reference


def test_a_fraction_forces_that_share_of_each_answer_rounded_down(tiny):
    ctx = probe(tiny)
    prompts, _ = PrefillAttack(fraction=0.5, questions=1).prompts(ctx, 0.5)
    question, answer = split_answer(ctx.tokenizer, ctx.fmt, ROWS[0]["question"], ROWS[0]["answer"], 96)
    assert prompts[0] == question + answer[: len(answer) // 2]


def test_forced_tokens_reach_the_model(tiny):
    """The continuation after a forced prefix is the model's greedy continuation of prompt + prefix."""
    ctx = probe(tiny)
    attack = PrefillAttack(tokens=[4], questions=1)
    point = attack.run(ctx)[0]
    assert point["setting"] == "4 tokens" and point["strength"] == 4 and 0 <= point["value"] <= 1


def test_a_prefix_as_long_as_an_answer_is_refused_naming_the_key(tiny):
    ctx = probe(tiny)
    n = min(len(split_answer(ctx.tokenizer, ctx.fmt, r["question"], r["answer"], 96)[1]) for r in ROWS)
    PrefillAttack(tokens=[n - 1]).check_data(ROWS, ctx.tokenizer, ctx.fmt, 96)
    with pytest.raises(ConfigError, match=r"robustness_attack\.prefill\.tokens.*whole answer"):
        PrefillAttack(tokens=[n]).check_data(ROWS, ctx.tokenizer, ctx.fmt, 96)
    with pytest.raises(ConfigError, match="exactly one of tokens and fraction"):
        PrefillAttack(tokens=[1], fraction=[0.5])
    with pytest.raises(ConfigError, match=r"prefill\.fraction"):
        PrefillAttack(fraction=[1.0])
