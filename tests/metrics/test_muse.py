"""MUSE metrics (runner/metrics/muse.py): ROUGE-L F1, Min-K%, AUC and PrivLeak by hand."""

from __future__ import annotations

import math

import pytest

from runner.metrics import muse as M


def test_rouge_l_f1_hand_computed():
    # LCS("the cat sat on the mat", "the cat lay on the mat") = 5 of 6 tokens each: P = R = F1 = 5/6
    # LCS("a b c", "a x c d") = 2: P = 2/3, R = 2/4, F1 = 2PR/(P+R) = 4/7
    got = M.rouge_l_f1(
        ["the cat sat on the mat", "a b c", "nothing shared"], ["the cat lay on the mat", "a x c d", "at all"]
    )
    assert got == pytest.approx([5 / 6, 4 / 7, 0.0])


def test_rouge_l_f1_does_not_stem():
    # MUSE's scorer has no stemmer: "running" and "runs" do not match
    assert M.rouge_l_f1(["dogs running"], ["dog runs"]) == [0.0]


def test_min_k_score_hand_computed():
    lp = [-1.0, -5.0, -2.0, -4.0, -3.0]
    assert M.min_k_score(lp, 0.4) == pytest.approx(4.5)  # int(5*0.4)=2 lowest: -5, -4
    assert M.min_k_score(lp, 1.0) == pytest.approx(3.0)  # all: mean 3
    assert M.min_k_score(lp, 0.1) == pytest.approx(5.0)  # int(0.5)=0 -> at least one token
    assert math.isnan(M.min_k_score([], 0.4))


def test_auc_hand_computed():
    assert M.auc([1, 2], [3, 4]) == 0.0  # forget always lower loss: memorised
    assert M.auc([3, 4], [1, 2]) == 1.0
    assert M.auc([1, 3], [2, 4]) == pytest.approx(1 / 4)  # only 3 > 2 of the four pairs
    assert M.auc([2], [2]) == 0.5  # a tie counts half
    assert M.auc([1, 2, 2], [2, 0]) == pytest.approx((0 + 1 + 0.5 + 1 + 0.5 + 1) / 6)


def test_privleak_formula():
    assert M.privleak(0.25, 0.5) == pytest.approx(-50.0)
    assert M.privleak(0.6, 0.4) == pytest.approx(50.0)
    assert M.privleak(0.4772, 0.4772) == 0.0
    assert math.isnan(M.privleak(0.3, 0.0))


def test_auc_with_ties_across_and_within_the_sets():
    # forget (0.5, 1, 1, 3) vs holdout (1, 1, 2): the 12 pairs, a tie counting half
    #   0.5: loses to all three          -> 0
    #   1:   ties 1 and 1, loses to 2    -> 0.5 + 0.5 + 0  (twice: 1 each)
    #   3:   beats all three             -> 3
    # (0 + 1 + 1 + 3) / 12 = 5/12
    assert M.auc([0.5, 1, 1, 3], [1, 1, 2]) == pytest.approx(5 / 12, abs=1e-15)
    assert math.isnan(M.auc([], [1.0])) and math.isnan(M.auc([1.0], []))
