"""Reasoning metrics by hand, and math-verify's answer checking on the real shipped problems."""

from __future__ import annotations

import json
import random
from math import comb

import numpy as np
import pytest

from runner.data.reasoning import PROJECT_DATA
from runner.metrics import reasoning as R


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- answer checking on shipped problems


def test_math500_gold_solutions_score_100_percent_and_a_shuffled_pairing_near_0():
    rows = _jsonl(PROJECT_DATA / "math500" / "test.jsonl")
    assert len(rows) == 500
    gold = [R.check_answer(r["solution"], r["answer"])[1] for r in rows]
    assert sum(gold) == 500
    random.seed(0)
    other = random.sample(range(len(rows)), len(rows))
    shuffled = [R.check_answer(rows[j]["solution"], rows[i]["answer"])[1] for i, j in enumerate(other) if i != j]
    assert sum(shuffled) / len(shuffled) < 0.03  # the same answer now and then (several problems answer 2, 3...)


def test_gsm8k_gold_solutions_score_100_percent_and_a_shuffled_pairing_near_0():
    rows = _jsonl(PROJECT_DATA / "gsm8k" / "test.jsonl")[:400]
    golds = [R.gold_answer(r["answer"], "####") for r in rows]
    assert golds[0] == "18" and all("####" not in g for g in golds)
    assert all(R.check_answer(r["answer"], g, "####")[1] for r, g in zip(rows, golds, strict=True))
    random.seed(1)
    other = random.sample(range(len(rows)), len(rows))
    shuffled = [R.check_answer(rows[j]["answer"], golds[i], "####")[1] for i, j in enumerate(other) if i != j]
    assert sum(shuffled) / len(shuffled) < 0.05


def test_extraction_prefers_boxed_and_reads_plain_numbers():
    boxed = "so x = 3, y = 4, and the answer is $\\boxed{\\frac{1}{2}}$."
    assert R.check_answer(boxed, "0.5") == ("\\frac{1}{2}", True)
    assert R.check_answer("The total is 1,000 dollars.", "1000")[1]
    assert R.check_answer("I am not sure.", "7") == ("", False)
    assert not R.check_answer("\\boxed{8}", "7")[1]


# ---------------------------------------------------------------- pass@k


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 2, 1), (5, 2, 2), (5, 2, 3), (5, 2, 4), (10, 3, 5), (4, 4, 2)])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    # the chance that k answers drawn without replacement from n, c of them correct, include a correct one
    assert R.pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_pass_at_k_small_cases_by_hand():
    assert R.pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert R.pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert R.pass_at_k(4, 2, 3) == 1.0  # only 2 wrong answers: any 3 include a correct one
    with pytest.raises(ValueError):
        R.pass_at_k(4, 1, 5)


# ---------------------------------------------------------------- thinking and reflection tokens


def test_thinking_length_counts_up_to_the_tag():
    assert R.thinking_length([5, 6, 7, 99, 8], [99]) == 3
    assert R.thinking_length([5, 7, 8, 7, 8, 1], [7, 8]) == 1  # the first full occurrence
    assert R.thinking_length([5, 7, 1, 8], [7, 8]) == 4  # never closed: all of it
    assert R.thinking_length([5, 6], None) == 2  # a model without a tag


def test_reflection_counts_and_positions_sum_the_forms_of_a_word():
    words = {"Wait": [10, 11], "but": [12]}
    ids = [1, 10, 2, 11, 12, 3, 10]
    assert R.reflection_counts(ids, words) == {"Wait": 3, "but": 1}
    assert R.reflection_positions(ids, {10, 11, 12}) == [1, 3, 4, 6]


def test_reflection_rates_pool_over_responses_by_hand():
    # response A: 6 tokens, reflections at 1 and 4; response B: 3 tokens, a reflection at 1
    positions, lengths = [[1, 4], [1]], [6, 3]
    assert R.reflection_rate(positions, lengths) == pytest.approx(3 / 9)
    assert R.reflection_rate(positions, lengths, R.in_window([0, 2])) == pytest.approx(2 / 4)  # positions 0, 1
    assert R.reflection_rate(positions, lengths, R.in_window([3, 10])) == pytest.approx(1 / 3)  # 3, 4, 5 of A
    assert R.reflection_rate([[]], [0]) is None
    # period 4: phases 0, .25, .5, .75 -> the peak quarter [1/8, 3/8) holds t = 1 (A, B) and 5 (A);
    # the negative half [1/2, 1) t = 2 (A, B) and 3 (A), none a reflection
    assert R.reflection_rate(positions, lengths, R.in_phase(4, 0.0, R.PEAK_QUARTER)) == pytest.approx(2 / 3)
    assert R.reflection_rate(positions, lengths, R.in_phase(4, 0.0, R.NEGATIVE_HALF)) == 0.0
    starts, freq = R.frequency_by_position(positions, lengths, bin_width=2)
    assert starts.tolist() == [0, 2, 4]
    assert np.allclose(freq, [2 / 4, 0 / 3, 1 / 2])


def test_expected_rate_pools_probability_over_the_rows_generating():
    mass, count = [0.5, 0.2, 0.1], [2, 2, 1]  # probability summed over the rows at each position
    assert R.probability_rate(mass, count) == pytest.approx(0.8 / 5)
    assert R.probability_rate(mass, count, R.in_window([1, 3])) == pytest.approx(0.3 / 3)
    assert R.probability_rate(mass, count, R.in_window([5, 9])) is None
