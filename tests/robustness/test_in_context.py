"""In-context relearning: k example turns before the question, never the evaluated row, drawn with the seed."""

from __future__ import annotations

import pytest

from runner.errors import ConfigError
from runner.robustness.in_context import InContextAttack, context_prompt, draw_examples
from tests.robustness.conftest import ROWS, probe


@pytest.mark.parametrize("k", [1, 3, 4])
def test_the_prompt_holds_k_other_rows_as_finished_turns_then_the_question(tiny, k):
    ctx = probe(tiny)
    for index in range(len(ROWS)):
        ids, chosen = context_prompt(ctx, index, k)
        text = ctx.tokenizer.decode(ids, skip_special_tokens=False)
        assert len(chosen) == k == len(set(chosen)) and index not in chosen
        assert text.count("Question:") == k + 1 and text.count(ctx.tokenizer.eos_token) == k
        for i, row in enumerate(ROWS):
            assert (row["answer"] in text) == (i in chosen)  # the evaluated row's answer is never shown
        assert text.rstrip().endswith(f"Question: {ROWS[index]['question']}\nAnswer:")  # the question comes last


def test_the_draw_follows_the_seed():
    assert draw_examples(10, 3, 4, seed=0) == draw_examples(10, 3, 4, seed=0)
    assert {tuple(draw_examples(10, 3, 4, seed=s)) for s in range(5)} != {tuple(draw_examples(10, 3, 4, seed=0))}


def test_a_point_per_k(tiny):
    points = InContextAttack(k=[1, 2], questions=2).run(probe(tiny))
    assert [p["strength"] for p in points] == [1, 2] and all(0 <= p["value"] <= 1 for p in points)


def test_k_above_the_forget_set_minus_one_is_refused_naming_the_key(tiny):
    ctx = probe(tiny)
    InContextAttack(k=[len(ROWS) - 1]).check_data(ROWS, ctx.tokenizer, ctx.fmt, 96)
    with pytest.raises(ConfigError, match=r"robustness_attack\.in_context\.k.*use k <= 4"):
        InContextAttack(k=[1, len(ROWS)]).check_data(ROWS, ctx.tokenizer, ctx.fmt, 96)
    with pytest.raises(ConfigError, match=r"in_context\.k"):
        InContextAttack(k=[0])
