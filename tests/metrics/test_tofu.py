"""Hand-computed checks of the TOFU metrics in runner/metrics/tofu.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runner.metrics.tofu import (
    forget_quality,
    harmonic_mean,
    model_utility,
    normalised_prob,
    option_prob,
    rouge_l_recall,
    truth_ratio,
    truth_ratio_forget_stat,
    truth_ratio_utility_stat,
)

LN2, LN4, LN16 = math.log(2), math.log(4), math.log(16)


# --- normalised_prob -------------------------------------------------------


def test_normalised_prob_is_exp_of_minus_avg_nll():
    # avg NLL 0 -> 1, ln 2 -> 1/2, ln 4 -> 1/4, 1.5 -> e^-1.5
    got = normalised_prob([0.0, LN2, LN4, 1.5])
    np.testing.assert_allclose(got, [1.0, 0.5, 0.25, math.exp(-1.5)], rtol=1e-12)
    assert got.dtype == np.float64


def test_normalised_prob_is_length_normalised_probability():
    # a 4-token answer with P(a|q) = 1/16 has avg NLL ln(16)/4 = ln 2, so P^(1/|a|) = 1/2
    assert normalised_prob([math.log(16) / 4])[0] == pytest.approx(0.5, rel=1e-12)


# --- option_prob -----------------------------------------------------------


def test_option_prob_single_question():
    # P(correct) = 0.5, P(wrong) = 0.25 + 0.25 -> 0.5 / (0.5 + 0.5) = 0.5
    got = option_prob([LN2], [[LN4, LN4]])
    np.testing.assert_allclose(got, [0.5], rtol=1e-12)


def test_option_prob_ragged_rows():
    correct = [LN2, LN4, 0.0]
    wrong = [
        [LN4, LN4],  # 0.5 / (0.5 + 0.25 + 0.25) = 1/2
        [LN2],  # 0.25 / (0.25 + 0.5) = 1/3
        [LN2, LN2, LN2],  # 1 / (1 + 0.5 + 0.5 + 0.5) = 2/5
    ]
    np.testing.assert_allclose(option_prob(correct, wrong), [1 / 2, 1 / 3, 2 / 5], rtol=1e-12)


# --- truth ratio -----------------------------------------------------------


def test_truth_ratio_uses_geometric_mean_of_perturbed_probs():
    # true avg NLL ln 2 -> P_true = 0.5
    # perturbed avg NLLs [ln 4, ln 16] -> probs 0.25, 0.0625, geometric mean sqrt(0.25 * 0.0625) = 0.125
    # R = 0.125 / 0.5 = 0.25   (the arithmetic mean 0.15625 would give 0.3125)
    got = truth_ratio([LN2], [[LN4, LN16]])
    np.testing.assert_allclose(got, [0.25], rtol=1e-12)
    assert math.sqrt(0.25 * 0.0625) / 0.5 == pytest.approx(0.25)


def test_truth_ratio_ragged_rows():
    true = [LN2, LN4, LN2]
    false = [
        [LN4, LN16],  # 0.125 / 0.5 = 0.25
        [LN2],  # 0.5 / 0.25 = 2
        [LN2, LN2, LN2],  # 0.5 / 0.5 = 1
    ]
    np.testing.assert_allclose(truth_ratio(true, false), [0.25, 2.0, 1.0], rtol=1e-12)


def test_truth_ratio_forget_stat():
    # min(R, 1/R) for R = [0.25, 2, 1] is [0.25, 0.5, 1] -> mean 1.75 / 3 = 7/12
    assert truth_ratio_forget_stat([0.25, 2.0, 1.0]) == pytest.approx(7 / 12, rel=1e-12)
    # symmetric in R <-> 1/R
    assert truth_ratio_forget_stat([4.0, 0.5, 1.0]) == pytest.approx(7 / 12, rel=1e-12)


def test_truth_ratio_utility_stat():
    # max(0, 1 - R) for R = [0.25, 2, 1] is [0.75, 0, 0] -> mean 0.25
    assert truth_ratio_utility_stat([0.25, 2.0, 1.0]) == pytest.approx(0.25, rel=1e-12)
    # R = [0.5, 0.1] -> [0.5, 0.9] -> 0.7
    assert truth_ratio_utility_stat([0.5, 0.1]) == pytest.approx(0.7, rel=1e-12)


# --- forget quality (two-sample KS p-value) -------------------------------


def test_forget_quality_identical_samples_is_one():
    sample = [0.3, 0.7, 1.2, 0.9, 0.5]
    assert forget_quality(sample, list(sample)) == pytest.approx(1.0)


def test_forget_quality_fully_separated_exact_p_value():
    # D = 1; of the C(6,3) = 20 equally likely interleavings of two size-3 samples only
    # xxxyyy and yyyxxx reach D = 1, so the exact two-sided p-value is 2/20 = 0.1
    assert forget_quality([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(2 / math.comb(6, 3), abs=1e-12)
    assert forget_quality([4.0, 5.0, 6.0], [1.0, 2.0, 3.0]) == pytest.approx(0.1, abs=1e-12)


def test_forget_quality_partially_overlapping_exact_p_value():
    # x = [1, 2, 4], y = [3, 5, 6]: D = 2/3 (after 1, 2: F_x = 2/3, F_y = 0).
    # As a +-1 walk over the 20 interleavings, D < 2/3 means staying within [-1, 1], i.e. every
    # step pair is +- or -+: 2^3 = 8 walks.  So P(D >= 2/3) = (20 - 8) / 20 = 0.6
    assert forget_quality([1.0, 2.0, 4.0], [3.0, 5.0, 6.0]) == pytest.approx(12 / 20, abs=1e-12)


# --- harmonic mean / model utility ----------------------------------------


def test_harmonic_mean():
    assert harmonic_mean([1.0, 0.5, 0.25]) == pytest.approx(3 / 7, rel=1e-12)
    assert harmonic_mean([0.4, 0.4]) == pytest.approx(0.4, rel=1e-12)
    assert harmonic_mean([1.0, 0.0, 0.5]) == 0.0


def test_model_utility_harmonic_mean_of_nine_values():
    metrics = {
        "retain": {"prob": 1.0, "rouge": 0.5, "truth_ratio": 0.25},
        "real_authors": {"prob": 0.5, "rouge": 0.5, "truth_ratio": 0.5},
        "world_facts": {"prob": 1.0, "rouge": 1.0, "truth_ratio": 1.0},
        # forget-split numbers are not part of Model Utility
        "forget": {"prob": 0.01, "rouge": 0.01, "truth_ratio": 0.01},
    }
    # 9 / (1 + 2 + 4 + 2 + 2 + 2 + 1 + 1 + 1) = 9 / 16
    assert model_utility(metrics) == pytest.approx(9 / 16, rel=1e-12)
    metrics["world_facts"]["rouge"] = 0.0
    assert model_utility(metrics) == 0.0


# --- ROUGE-L recall --------------------------------------------------------


def test_rouge_l_recall_prefix():
    # LCS("the cat sat", "the cat sat on the mat") = 3 tokens, reference has 6 -> recall 1/2
    assert rouge_l_recall(["the cat sat"], ["the cat sat on the mat"]) == [pytest.approx(0.5)]


def test_rouge_l_recall_is_against_the_reference():
    # swapped: the whole 3-token reference is covered -> 1.0
    assert rouge_l_recall(["the cat sat on the mat"], ["the cat sat"]) == [pytest.approx(1.0)]


def test_rouge_l_recall_identical_and_disjoint():
    assert rouge_l_recall(["a dog barked loudly", "red blue"], ["a dog barked loudly", "green yellow"]) == [
        pytest.approx(1.0),
        pytest.approx(0.0),
    ]


def test_rouge_l_recall_is_longest_common_subsequence_not_unigram_overlap():
    # "mat the cat" shares 3 unigrams with the reference, but the LCS in order is "the cat" -> 2/6
    assert rouge_l_recall(["mat the cat"], ["the cat sat on the mat"]) == [pytest.approx(1 / 3)]
    # non-contiguous subsequence counts: "cat on mat" -> 3/6
    assert rouge_l_recall(["cat on mat"], ["the cat sat on the mat"]) == [pytest.approx(0.5)]


def test_rouge_l_recall_uses_porter_stemmer_and_lowercases():
    # "cats" stems to "cat": LCS("the cat", "the cat sat") = 2 of 3
    assert rouge_l_recall(["The CATS"], ["the cat sat"]) == [pytest.approx(2 / 3)]


def test_rouge_l_recall_length_mismatch_raises():
    with pytest.raises(ValueError):
        rouge_l_recall(["a", "b"], ["a"])
